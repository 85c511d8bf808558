"""The `minibert` command, run as a user runs it: a subprocess, stdout a pipe, stderr read."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minibert

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "minibert", *args], input=stdin, capture_output=True, env=ENV,
                          timeout=300)


def no_traceback(p):
    assert b"Traceback" not in p.stderr, p.stderr.decode()


def test_help_is_fast_and_does_not_load_tensorflow():
    code = ("import sys, minibert.cli as c\n"
            "try:\n    c.main(['classify', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported for --help'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, env=ENV, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    assert b"--top-k" in p.stdout


def test_classify_file_keeps_order_and_blank_lines(tmp_path):
    lines = ["I love this film", "", "I hate this so much!", "word " * 1000, "   ", "this is the best thing happened to me"]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    p = run("classify", "--file", str(path), "--batch-size", "2")
    assert p.returncode == 0, p.stderr.decode()
    no_traceback(p)
    records = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert [r["text"] for r in records] == lines
    assert records[0]["label"] == "POSITIVE" and records[2]["label"] == "NEGATIVE" and records[5]["label"] == "POSITIVE"
    assert all(0.5 <= r["score"] <= 1 for r in records)


@pytest.mark.slow
def test_classify_stdin_tsv_and_top_k():
    p = run("classify", "--file", "-", "--format", "tsv", stdin="great\nawful\n".encode())
    assert p.returncode == 0, p.stderr.decode()
    rows = [line.split("\t") for line in p.stdout.decode().splitlines()]
    assert [(r[0], r[2]) for r in rows] == [("POSITIVE", "great"), ("NEGATIVE", "awful")]
    p = run("classify", "great", "--top-k", "2")
    rec = json.loads(p.stdout)
    assert [x["label"] for x in rec["labels"]] == ["POSITIVE", "NEGATIVE"]


@pytest.mark.slow
def test_embed_npy_and_jsonl(tmp_path, minilm):
    out = tmp_path / "e.npy"
    p = run("embed", "hello world", "a cat", "--output", str(out))
    assert p.returncode == 0, p.stderr.decode()
    arr = np.load(out)
    assert arr.shape == (2, 384) and np.allclose(np.linalg.norm(arr, axis=1), 1, atol=1e-5)
    p = run("embed", "hello world")
    vec = np.array(json.loads(p.stdout)["embedding"])
    assert np.abs(vec - arr[0]).max() < 1e-6
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    p = run("embed", "--file", str(empty), "--output", str(out))  # an empty file gives an empty (0, 384) array
    assert p.returncode == 0, p.stderr.decode()
    assert np.load(out).shape == (0, 384)


def test_tokenize_seed():
    p = run("tokenize", "I've been waiting for a HuggingFace course my whole life.")
    rec = json.loads(p.stdout)
    assert rec["ids"] == [101, 1045, 1005, 2310, 2042, 3403, 2005, 1037, 17662, 12172, 2607, 2026, 2878, 2166, 1012, 102]
    assert rec["tokens"][:3] == ["[CLS]", "i", "'"]


@pytest.mark.parametrize("args,stdin,message", [
    (["classify", "--model", "/no/such/model", "hi"], None, b"no such folder: /no/such/model"),
    (["classify", "--file", "/no/such/file.txt"], None, b"no such file: /no/such/file.txt"),
    (["classify", "--file", "-"], b"fine\n\xff\xfe bad\n", b"<stdin>: line 2 is not valid UTF-8"),
    (["classify", "fine", b"a\xffb"], None, b"TEXT argument 2 is not valid UTF-8 (byte 0xff at column 2)"),
    (["tokenize", b"\xe9t\xe9"], None, b"TEXT argument 1 is not valid UTF-8 (byte 0xe9 at column 1)"),
    (["classify"], b"ok\r\nnot \xc3(\n", b"<stdin>: line 2 is not valid UTF-8 (byte 0xc3 at column 5)"),
    (["classify", "--frobnicate", "hi"], None, b"unrecognized arguments: --frobnicate"),
    (["classify", "--model", "distilbert-base-uncased-finetuned-sst-2-english", "hi"], None, b"pass a local folder"),
    (["classify"], b"", b"no input: give TEXT arguments, --file PATH, or lines on standard input"),
    (["classify", "--batch-size", "0", "x"], None, b"argument --batch-size: must be at least 1, got 0"),
    (["qa", "--doc-stride", "-2", "--context", "c", "q"], None, b"argument --doc-stride: must be at least 1, got -2"),
    (["embed", "--truncate-dim", "0", "x"], None, b"argument --truncate-dim: must be at least 1, got 0"),
    (["serve", "--replicas", "0"], None, b"argument --replicas: must be at least 1, got 0"),
    (["classify", "--top-k", "two", "x"], None, b"argument --top-k: invalid count value: 'two'"),
])
def test_errors_are_one_clear_line(args, stdin, message):
    p = run(*args, stdin=stdin)
    assert p.returncode != 0
    no_traceback(p)
    assert message in p.stderr, p.stderr.decode()
    assert p.stdout == b""


@pytest.fixture(scope="module")
def task_folders(tmp_path_factory, minilm):
    """Tiny checkpoints of every head that a task reads, with the real uncased tokenizer."""
    import shutil

    from reference import make_checkpoint

    cfg = dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2)
    heads = {"ner": ("token-classification", {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}),
             "qa": ("question-answering", None), "fill-mask": ("masked-lm", None),
             "zero-shot": ("sequence-classification", {0: "contradiction", 1: "neutral", 2: "entailment"}),
             "pair": ("sequence-classification", {0: "NEGATIVE", 1: "POSITIVE"})}
    folders = {}
    for verb, (head, labels) in heads.items():
        extra = {"id2label": labels, "label2id": {v: k for k, v in labels.items()}} if labels else {}
        folder = make_checkpoint(tmp_path_factory.mktemp(verb), "bert", head, **cfg, **extra)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            shutil.copy(os.path.join(minilm, name), folder)
        folders[verb] = folder
    return folders


TASK_RUNS = {  # verb -> (CLI arguments, the pipeline task, its inputs from the CLI's lines, its options)
    "ner": (["--aggregation", "simple"], "ner", lambda lines, ctx: lines, {"aggregation_strategy": "simple"}),
    "fill-mask": (["--top-k", "3"], "fill-mask", lambda lines, ctx: lines, {"top_k": 3}),
    "zero-shot": (["--labels", "sports,politics,food"], "zero-shot-classification", lambda lines, ctx: lines,
                  {"candidate_labels": ["sports", "politics", "food"]}),
    "pair": (["--pair"], "text-classification",
             lambda lines, ctx: [dict(zip(("text", "text_pair"), x.split("\t"))) for x in lines], {}),
    "qa": (["--context", "CONTEXT"], "question-answering",
           lambda lines, ctx: [{"question": q, "context": ctx} for q in lines], {}),
}
TASK_LINES = {"ner": ["John lives in Paris.", "", "nothing here"],
              "fill-mask": ["paris is the [MASK] of france.", "a [MASK] and a [MASK]."],
              "zero-shot": ["the match ended in a draw", "the senate passed the bill"],
              "pair": ["a man eats\tsomeone is eating", "it rains\tthe sun shines"],
              "qa": ["where does john live?", "what is the weather?"]}


# Each verb loads a model in a subprocess; ner and zero-shot run by default, the others in the slow suite.
@pytest.mark.parametrize("verb", [v if v in ("ner", "zero-shot") else pytest.param(v, marks=pytest.mark.slow)
                                  for v in sorted(TASK_RUNS)])
def test_each_task_from_the_command_line(tmp_path, task_folders, verb):
    """JSON lines into a pipe, one per input line, equal to the library's pipeline on the same inputs."""
    args, task, to_inputs, options = TASK_RUNS[verb]
    context = "John lives in Paris. The weather there is mild and it rains often."
    (tmp_path / "context.txt").write_text(context, encoding="utf-8")
    args = [str(tmp_path / "context.txt") if a == "CONTEXT" else a for a in args]
    lines = TASK_LINES[verb]
    command = "classify" if verb == "pair" else verb
    p = run(command, "--model", task_folders[verb], *args, stdin="\n".join(lines).encode() + b"\n")
    assert p.returncode == 0, p.stderr.decode()
    no_traceback(p)
    records = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert len(records) == len(lines)
    want = minibert.pipeline(task, model=task_folders[verb])(to_inputs(lines, context), **options)
    for rec, w in zip(records, want):
        if verb == "ner":
            assert rec["entities"] == json.loads(json.dumps(w))
        elif verb == "fill-mask":
            masks = w if w and isinstance(w[0], list) else [w]
            assert [[c["token_str"] for c in m] for m in rec["masks"]] == [[c["token_str"] for c in m] for m in masks]
        elif verb == "zero-shot":
            assert rec["labels"] == w["labels"] and np.allclose(rec["scores"], w["scores"], atol=1e-6)
        elif verb == "pair":
            assert rec["label"] == w["label"] and abs(rec["score"] - w["score"]) < 1e-6
        else:
            assert (rec["answer"], rec["start"], rec["end"]) == (w["answer"], w["start"], w["end"])
            assert context[rec["start"]:rec["end"]] == rec["answer"]


def test_task_without_default_model_says_what_to_pass():
    p = run("ner", "John lives in Paris.")
    assert p.returncode == 1 and p.stdout == b""
    no_traceback(p)
    assert b"ner has no offline default model: pass --model" in p.stderr and b"dslim/bert-base-NER" in p.stderr


def test_qa_without_context_and_pair_without_tab(task_folders):
    p = run("qa", "--model", task_folders["qa"], "who?")
    assert p.returncode == 1 and b"qa needs --context FILE" in p.stderr
    p = run("classify", "--pair", "--model", task_folders["pair"], "no tab here")
    assert p.returncode == 1 and b"--pair: each input is TEXT<TAB>TEXT_PAIR" in p.stderr


@pytest.mark.slow
def test_failed_write_keeps_the_previous_file(tmp_path):
    """A full disk (here a file-size limit) half-way through writing leaves the old .npy intact, no temp file."""
    import resource
    import signal

    old = tmp_path / "prev.npy"
    np.save(old, np.arange(10, dtype=np.float32))
    before = old.read_bytes()

    def limit():  # 50 kB: the 200 x 384 float32 embeddings (300 kB) do not fit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    p = subprocess.run([sys.executable, "-m", "minibert", "embed", "--file", "-", "--output", str(old)],
                       input=b"some sentence\n" * 200, capture_output=True, env=ENV, timeout=300, preexec_fn=limit)
    assert p.returncode == 1, p.stderr.decode()
    no_traceback(p)
    assert old.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["prev.npy"]


def test_output_into_a_missing_folder_fails_before_any_work(tmp_path):
    p = run("embed", "--output", str(tmp_path / "nodir" / "x.npy"), "a text")
    assert p.returncode == 1 and b"no folder" in p.stderr and b"nodir" in p.stderr
    assert b"tensorflow" not in p.stderr.lower()


def test_missing_model_folder_fails_before_tensorflow_loads():
    code = ("import sys, minibert.cli as c\n"
            "rc = c.main(['ner', '--model', './no/such/folder', 'hi'])\n"
            "assert rc == 1 and 'tensorflow' not in sys.modules, (rc, 'tensorflow' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, env=ENV, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    assert b"no such folder: ./no/such/folder" in p.stderr


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory, minilm):
    """A small sentiment checkpoint whose last LayerNorm weights are finite but overflow float32 (NaN weights are
    refused at load): every score and vector is NaN."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from reference import make_checkpoint

    folder = make_checkpoint(tmp_path_factory.mktemp("nan_model"), "distilbert", "sequence-classification", dim=32,
                             n_heads=4, hidden_dim=37, n_layers=1, vocab_size=30522, max_position_embeddings=64)
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(minilm, name), folder)
    path = os.path.join(folder, "model.safetensors")
    weights = load_file(path)
    key = "distilbert.transformer.layer.0.output_layer_norm.weight"
    weights[key] = np.full_like(weights[key], 3e38)  # times a normalised value past 1: infinity
    save_file(weights, path, metadata={"format": "pt"})
    return folder


def strict_json(line):
    def refuse(name):
        raise AssertionError(f"{name} is not JSON: {line[:80]}")
    return json.loads(line, parse_constant=refuse)


@pytest.mark.parametrize("args", [["classify", "good", "bad"], ["classify", "good", "bad", "--top-k", "2"],
                                  ["embed", "good", "bad"], ["trace", "good", "bad", "--format", "json"]])
def test_nan_scores_are_json_null_with_a_note(nan_model, args):
    p = run(*args, "--model", nan_model)
    assert p.returncode == 0, p.stderr.decode()
    records = [strict_json(line) for line in p.stdout.decode().splitlines()]
    assert records and all("null" in json.dumps(r) for r in records)
    err = p.stderr.decode()
    assert "NaN or infinite numbers written as null" in err
    assert ("the trace" if args[0] == "trace" else "argument 1, argument 2") in err


def test_nan_note_names_file_lines(nan_model, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("good\nbad\n", encoding="utf-8")
    p = run("classify", "--file", str(path), "--model", nan_model)
    assert p.returncode == 0, p.stderr.decode()
    assert [strict_json(line)["score"] for line in p.stdout.decode().splitlines()] == [None, None]
    assert "line 1, line 2" in p.stderr.decode()


def test_non_finite_outputs_warn_once_in_python_and_embed_output_refuses_them(nan_model, tmp_path):
    """The Python pipeline says once that its scores are not numbers; `embed --output` (a .npy, where NaN can
    be written) refuses to write NaN vectors, in one line."""
    import warnings

    import minibert.cli

    pipe = minibert.pipeline("text-classification", model=nan_model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = pipe(["good", "bad"]), pipe("good")
    assert all(np.isnan(r["score"]) for r in first + second)
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert said == ["text-classification pipeline: the model's logits for input 0 hold NaN or infinite values, so "
                    "its results are not numbers: are the model's weights broken? (said once per pipeline)"]
    with pytest.warns(RuntimeWarning, match=r"feature-extraction pipeline: the model's last_hidden_state for input 0 "
                                            r"hold NaN or infinite values"):
        assert minibert.cli.main(["embed", "--model", nan_model, "--output", str(tmp_path / "e.npy"), "good"]) == 1
    assert not (tmp_path / "e.npy").exists()  # refused, not written: a .npy of NaN reads as numbers


# -- hostile inputs, in this process: each refused in one line before any model loads -------------
@pytest.mark.parametrize("argv, message", [
    (["classify", "--file", "/dev/zero"], "/dev/zero: line 1 is longer than 1048576 bytes, the limit for one text"),
    (["qa", "--context", "/dev/zero", "a question"], "--context /dev/zero is longer than 1048576 bytes"),
    (["zero-shot", "--labels", "a,,b", "a text"], "--labels 'a,,b': label 2 is empty"),
    (["classify", "--pair", "one\ttwo", "a\tb\tc"], "TEXT argument 2: --pair: each input is TEXT<TAB>TEXT_PAIR, one tab, got 2"),
])
def test_hostile_inputs_are_one_line_before_any_model(argv, message, capsys, monkeypatch):
    import minibert.cli
    from minibert import pipelines

    monkeypatch.setattr(pipelines, "pipeline", lambda *a, **k: pytest.fail("a model was loaded"))
    assert minibert.cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"minibert: error: {message}") and err.count("\n") == 1, err


def test_tsv_escapes_labels_and_output_keeps_its_mode(tmp_path, capsys):
    """A label holding a tab or a newline stays in its cell; `embed --output` over a 0644 file keeps 0644."""
    import minibert.cli
    from reference import make_checkpoint, minilm_dir

    folder = make_checkpoint(tmp_path / "m", "bert", "sequence-classification", hidden_size=32, num_attention_heads=4,
                             intermediate_size=37, num_hidden_layers=2, vocab_size=30522, max_position_embeddings=64,
                             id2label={0: "bad\tlabel", 1: "two\nlines"}, label2id={"bad\tlabel": 0, "two\nlines": 1})
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json", "tokenizer_config.json"):
        (tmp_path / "m" / name).write_bytes(open(os.path.join(minilm_dir(), name), "rb").read())
    assert minibert.cli.main(["classify", "--model", str(folder), "--format", "tsv", "one", "two"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.count("\t") == 2 for line in lines), lines
    assert {line.split("\t")[0] for line in lines} <= {"bad\\tlabel", "two\\nlines"}
    out = tmp_path / "emb.npy"
    out.write_bytes(b"old")
    os.chmod(out, 0o644)
    assert minibert.cli.main(["embed", "--output", str(out), "a text"]) == 0
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o644)
    assert np.load(out).shape == (1, 384)


def test_help_texts_match_what_the_commands_do(capsys):
    import minibert.cli

    helps = {}
    for verb in ("tokenize", "ner", "embed", "trace", "qa", "classify"):
        with pytest.raises(SystemExit):
            minibert.cli.main([verb, "--help"])
        helps[verb] = " ".join(capsys.readouterr().out.split())
    assert "truncate texts to N tokens (default: no truncation)" in helps["tokenize"]
    assert "truncate texts to N tokens (default: the model's limit)" in helps["classify"]
    assert "question" not in helps["ner"] and "question" not in helps["embed"]
    assert "--format {table,jsonl,tsv}" in helps["embed"]
    assert "at most 1 GiB of them" in helps["trace"]
    assert "--max-question-len N refuse questions longer than N tokens (default 64)" in helps["qa"]


@pytest.mark.slow  # three model loads
def test_qa_table_shows_every_answer_embed_writes_tsv_and_max_length_is_the_model_s(tmp_path, task_folders, capsys):
    """`qa --top-k 2 --format table` shows both answers; `embed --format tsv` the vector's numbers; --max-length
    defaults to the model's positions (not its tokenizer's larger limit) and is refused past them."""
    import minibert.cli
    from reference import make_checkpoint, minilm_dir

    context = "John lives in Paris. The weather there is mild and it rains often."
    (tmp_path / "context.txt").write_text(context, encoding="utf-8")
    assert minibert.cli.main(["qa", "--model", task_folders["qa"], "--context", str(tmp_path / "context.txt"),
                              "--top-k", "2", "--format", "table", "where does john live?"]) == 0
    want = minibert.pipeline("question-answering", model=task_folders["qa"])(
        question="where does john live?", context=context, top_k=2)
    row = capsys.readouterr().out.splitlines()[1]
    assert " | ".join(a["answer"] for a in want) in row and " | ".join(f"{a['score']:.4f}" for a in want) in row

    assert minibert.cli.main(["embed", "--format", "tsv", "A man is eating food."]) == 0
    numbers, text = capsys.readouterr().out.rstrip("\n").split("\t")
    want = minibert.pipeline("feature-extraction")("A man is eating food.", pooling="mean", normalize=True)
    assert text == "A man is eating food." and np.abs(np.array(numbers.split(), float) - want).max() < 1e-6

    folder = make_checkpoint(tmp_path / "m", "bert", "sequence-classification", hidden_size=32, num_attention_heads=4,
                             intermediate_size=37, num_hidden_layers=2, vocab_size=30522, max_position_embeddings=64)
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json", "tokenizer_config.json"):  # 512 tokens
        (tmp_path / "m" / name).write_bytes(open(os.path.join(minilm_dir(), name), "rb").read())
    assert minibert.cli.main(["classify", "--model", folder, "--format", "jsonl", "word " * 100]) == 0
    assert json.loads(capsys.readouterr().out)["label"]
    assert minibert.cli.main(["classify", "--model", folder, "--max-length", "100", "a text"]) == 1
    assert capsys.readouterr().err == ("minibert: error: --max-length 100 is more than the 64 tokens this model takes: "
                                       "give --max-length 64 or less\n")
