"""Corpus-scale inference on Ray Data (minibert/ray.py), on a local Ray with 2 CPUs.

The reference is always the single-process pipeline, `minibert.pipeline(task)(texts)`, on the same
texts: the Ray path must give every row once, with the same labels and the same numbers.
"""
import io
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import ray  # in the test extra: a test machine without Ray fails here rather than skipping

import minibert.ray as mray
from minibert.ray import actor, readers
from minibert import pipeline, pipelines
from minibert.cli import main
from reference import REPO
from reference import SST2 as SST2_DIR

SST2 = os.path.join(SST2_DIR, "train.txt")
N = 2000
RAY_BATCH = 100  # rows per actor call in these tests: 28 calls or more, so a worker can be killed midway
# Ray's workers are separate processes: they must import this checkout's minibert, as pytest does.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
       "HF_HUB_OFFLINE": "1",
       # Ray's memory monitor kills workers when the node is above 95% memory, counting every process on
       # it: on a shared test machine that is other people's memory, and the run would restart actors
       # for as long as they use it. The fault test below kills a worker itself.
       "RAY_memory_monitor_refresh_ms": "0"}


def sst2_texts(n=N):
    with open(SST2, encoding="utf-8") as f:
        return [line.rstrip("\n").split(" ", 1)[1] for line in f][:n]


@pytest.fixture(scope="module")
def local_ray():
    saved = dict(os.environ)
    os.environ.update(ENV)  # inherited by the raylet and so by every worker it starts
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 2**20, logging_level="WARNING",
             log_to_driver=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def texts():
    return sst2_texts()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Small BERT checkpoints (2 layers, 32 wide, random weights) with the real uncased vocabulary, one
    per task head: SST-2 texts tokenize as they do for the default model, and 2,000 of them in every
    format cost seconds. The equality they prove is the Ray path's, not the model's."""
    import shutil

    from reference import make_checkpoint, minilm_dir

    config = dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2,
                  vocab_size=30522, max_position_embeddings=512)
    heads = {"text-classification": ("sequence-classification", {0: "NEGATIVE", 1: "POSITIVE"}),
             "feature-extraction": ("model", None),
             "token-classification": ("token-classification", {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}),
             "fill-mask": ("masked-lm", None), "question-answering": ("question-answering", None),
             "zero-shot-classification": ("sequence-classification", {0: "entailment", 1: "neutral", 2: "contradiction"})}
    folders = {}
    for task, (head, labels) in heads.items():
        extra = dict(id2label=labels, label2id={v: k for k, v in labels.items()}) if labels else {}
        folder = make_checkpoint(tmp_path_factory.mktemp(task), "bert", head, seed=len(folders), **config, **extra)
        for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copy(os.path.join(minilm_dir(), name), folder)
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "BertTokenizer", "model_max_length": 512, "do_lower_case": True}, f)
        folders[task] = folder
    return folders


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, texts):
    """The same 2,000 SST-2 texts in every format the reader takes; JSONL, CSV and Parquet also carry an
    `id` and a `gold` column, which must come through."""
    d = tmp_path_factory.mktemp("inputs")
    ids = np.arange(N)
    table = pa.table({"id": ids, "text": texts, "gold": [i % 2 for i in ids]})
    paths = {fmt: d / f"sst2.{ext}" for fmt, ext in (("parquet", "parquet"), ("text", "txt"), ("jsonl", "jsonl"), ("csv", "csv"))}
    pq.write_table(table, paths["parquet"], row_group_size=700)  # several row groups
    paths["text"].write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    with open(paths["jsonl"], "w", encoding="utf-8") as f:
        for i in range(N):
            f.write(json.dumps({"id": i, "text": texts[i], "gold": i % 2}) + "\n")
    pcsv.write_csv(table, paths["csv"])
    return paths


def concat(tables) -> pa.Table:
    """One table from the blocks of several files (a text file's blocks have no `id` or `gold`)."""
    return pa.concat_tables(tables, promote_options="default")


# -- the readers, without Ray: every row once, a malformed one flagged --------------------------
def read_all(reader, data: bytes, limit=mray.MAX_TEXT_BYTES, column="text"):
    return pa.concat_tables(reader(io.BytesIO(data), "f", column, [column], limit)).to_pylist()


class Trickle(io.BytesIO):
    """A stream that gives 3 bytes a read, so lines straddle every chunk boundary."""

    def read(self, n=-1):
        return super().read(3)


def test_text_lines_every_line_once_as_the_cli_counts_them():
    rows = read_all(readers._read_text, b"one\r\n\n  \ntwo \xe2\x80\xa8 still two\nlast")
    assert [(r["input_row"], r["text"], r["error"]) for r in rows] == [
        (1, "one", None), (2, "", None), (3, "  ", None), (4, "two \u2028 still two", None), (5, "last", None)]
    assert read_all(readers._read_text, b"a\n") == [{"input_file": "f", "input_row": 1, "text": "a", "error": None}]
    assert list(readers._read_text(io.BytesIO(b""), "f", "text", ["text"], 10)) == []  # an empty file: no rows


def test_text_lines_bad_bytes_and_overlong_lines_are_rows_with_an_error():
    data = b"hello\nworld wide web\nok \xff\xfe\n\nend"
    lines = list(readers._lines(Trickle(data), 8))
    assert lines == [(1, b"hello"), (2, None), (3, b"ok \xff\xfe"), (4, b""), (5, b"end")]
    rows = read_all(readers._read_text, data, limit=8)
    assert [r["input_row"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[1]["text"] is None and rows[1]["error"] == "f, row 2: line longer than 8 bytes"
    assert rows[2]["text"] is None and rows[2]["error"] == "f, row 3: not valid UTF-8 (byte 0xff at column 4)"
    assert [r["error"] for r in rows if r["input_row"] in (1, 4, 5)] == [None] * 3


def test_jsonl_non_string_missing_and_broken_rows_are_kept_with_an_error():
    data = (b'{"text": "fine", "id": 1}\n{"text": 5, "id": 2}\n{"text": null, "id": 3}\n\n'
            b'{"id": 5}\nnot json\n[1, 2]\n{"text": ["a"], "id": 8}\n{"text": "caf\xc3\xa9", "id": 9, "extra": true}\n')
    rows = read_all(readers._read_jsonl, data)
    assert [r["input_row"] for r in rows] == [1, 2, 3, 5, 6, 7, 8, 9]  # line 4 is blank: no record
    assert [r["id"] for r in rows] == [1, 2, 3, 5, None, None, 8, 9]
    errors = {r["input_row"]: r["error"] for r in rows}
    assert errors[1] is None and errors[9] is None
    assert errors[2] == "f, row 2: 'text' is int, expected a string"
    assert errors[3] == "f, row 3: 'text' is null, expected a string"
    assert errors[5] == "f, row 5: no field 'text'"
    assert errors[6].startswith("f, row 6: not valid JSON")
    assert errors[7] == "f, row 7: a JSON list, expected an object"
    assert errors[8] == "f, row 8: 'text' is list, expected a string"
    assert rows[-1]["text"] == "café" and rows[-1]["extra"] is True and rows[0]["extra"] is None
    # the offending values are kept beside their error, as JSON text when they are not strings
    assert [r["text"] for r in rows] == ["fine", "5", None, None, None, None, '["a"]', "café"]


def test_jsonl_deep_nesting_and_changing_types_are_error_rows(tmp_path):
    """A valid JSON line nested past Python's reader (200 KB of brackets) and a field whose type changes
    between rows are error rows naming the file and row, not a failed read with Arrow's message."""
    deep = b'{"text": "deep", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    data = (b'{"text": "one", "n": 1}\n' + deep + b'\n{"text": "three", "n": "three"}\n{"text": "four", "n": 4.5}\n'
            b'{"text": "five", "n": null, "tags": {"a": 1}}\n{"text": "six", "tags": {"a": [1]}}\n')
    rows = read_all(readers._read_jsonl, data)
    assert [r["input_row"] for r in rows] == [1, 2, 3, 4, 5, 6]
    errors = [r["error"] for r in rows]
    assert errors[1] == "f, row 2: JSON nested deeper than Python's reader goes"
    assert errors[2] == 'f, row 3: field \'n\' is a string ("three"), but a number in row 1'
    assert errors[0] is errors[3] is errors[4] is errors[5] is None
    assert [r["n"] for r in rows] == [1, None, None, 4.5, None, None]
    assert [r["tags"] for r in rows][4:] == ['{"a": 1}', '{"a": [1]}']  # objects Arrow cannot unify: kept as JSON text
    first_deep = tmp_path / "deep.jsonl"  # the driver's look at the first line's columns takes it too
    first_deep.write_bytes(deep + b"\n")
    assert readers.input_columns(str(first_deep), "jsonl") is None


def test_rows_the_pipeline_refuses_are_error_rows(tiny, tmp_path):
    """A text with no mask token and a question past max_question_len: error rows under record, the same
    rows as the pipeline for the others; under fail, one line naming the file and row."""
    masked = pa.table({"text": ["the [MASK] was good .", "no mask here", "a [MASK] day ."],
                       "input_file": ["f.txt"] * 3, "input_row": [1, 2, 3]})
    fill = mray.Predict("fill-mask", model=tiny["fill-mask"], on_error="record", top_k=2)
    table = fill(masked)
    assert table["error"].to_pylist() == [None, "f.txt, row 2 has no mask token [MASK]: fill-mask predicts the word at "
                                                "each [MASK]", None]
    want = fill.pipe(["the [MASK] was good .", "a [MASK] day ."], top_k=2)  # the same rows in one pipeline call
    close([table["masks"][i].as_py() for i in (0, 2)], [[w] for w in want], "fill-mask")
    assert table["masks"][1].as_py() is None
    fill.on_error = "fail"
    with pytest.raises(mray.BadRow, match=r"^f.txt, row 2 has no mask token \[MASK\]"):
        fill(masked)
    flagged = masked.append_column("error", pa.array([None, None, "f.txt, row 3: not valid UTF-8"], pa.string()))
    with pytest.raises(mray.BadRow, match=r"^f.txt, row 2 has no mask token"):  # the first bad row, not the reader's
        fill(flagged)
    long = "why " * 80
    qa = mray.Predict("question-answering", model=tiny["question-answering"], on_error="record")
    table = qa(pa.table({"question": ["Who?", long], "context": ["Ana flew to Paris.", "Ana flew to Paris."]}))
    assert table["error"].to_pylist() == [None, "row 1 of a batch: the question is 80 tokens long, more than "
                                                "max_question_len=64; ask a shorter question, or raise max_question_len"]
    assert table["answer"][0].as_py() == qa.pipe(question="Who?", context="Ana flew to Paris.")["answer"]


def test_csv_rows_are_records_and_bad_values_are_flagged():
    data = b'id,text\n1,"two\nlines"\n2,bad \xff\n3,\n4,"quoted, comma"\n'
    rows = read_all(readers._read_csv, data)
    assert [(r["input_row"], r["id"], r["text"]) for r in rows] == [
        (1, 1, "two\nlines"), (2, 2, None), (3, 3, ""), (4, 4, "quoted, comma")]
    assert rows[1]["error"] == "f, row 2: 'text' is not valid UTF-8 (byte 0xff at column 5)"
    assert [r["error"] for r in rows if r["id"] != 2] == [None] * 3
    with pytest.raises(ValueError, match="no column 'review'; columns: id, text"):
        read_all(readers._read_csv, data, column="review")


def test_parquet_nulls_and_non_string_columns_are_flagged(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"], "n": [1, 2, 3]}), path)
    rows = read_all(readers._read_parquet, path.read_bytes())
    assert [r["error"] for r in rows] == [None, "f, row 2: 'text' is null, expected a string", None]
    rows = read_all(readers._read_parquet, path.read_bytes(), column="n")
    assert [r["error"] for r in rows] == [f"f, row {i}: 'n' is int64, expected a string" for i in (1, 2, 3)]
    assert [r["n"] for r in rows] == ["1", "2", "3"]  # kept, as text, beside the error


# -- the same numbers as one process, row for row, in every format; a worker killed midway --------
def actor_pids():
    """PIDs of this test's model actors: processes Ray titles MapWorker(...Predict...) that descend from
    this process (through the raylet ray.init started), so nothing else on the machine is touched."""
    me, found = os.getpid(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read()
        except OSError:
            continue
        if not title.startswith(b"ray::MapWorker") or b"Predict" not in title:
            continue
        p = int(pid)
        while p > 1 and p != me:
            try:
                with open(f"/proc/{p}/stat") as f:
                    p = int(f.read().rsplit(")", 1)[1].split()[1])  # the parent pid
            except OSError:
                break
        if p == me:
            found.append(int(pid))
    return found


class PredictAndName(mray.Predict):
    """Predict, plus a `batch` column naming the call each row was computed in (its first row's file
    and row), so that the test can run the one-process pipeline on exactly the same batches."""

    def __call__(self, batch):
        first = f"{batch['input_file'][0].as_py()}:{batch['input_row'][0].as_py()}"
        return super().__call__(batch).append_column("batch", pa.array([first] * batch.num_rows))


# Ray's workers cannot import this test module: send the class itself (its base is minibert's).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def predict_files(task, paths, kill_a_worker=False, **kwargs):
    """The outputs of one Ray run over `paths` (read as one dataset), streamed back in order; with
    kill_a_worker, one model actor is SIGKILLed as soon as the first results are out."""
    datasets = [mray.read([path]) for path in paths]
    ds = mray.predict(datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0], task, workers=2,
                      ray_batch_size=RAY_BATCH, udf=PredictAndName, **kwargs)
    batches, killed = [], None
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        batches.append(batch)
        if kill_a_worker and killed is None:
            pids = actor_pids()
            assert pids, "no model actor found to kill"
            killed = (pids[0], sum(b.num_rows for b in batches))
            os.kill(killed[0], signal.SIGKILL)
    return concat(batches), killed


def one_process(task, out, model=None, **options):
    """The single-process pipeline's results for the rows of `out`, computed batch by batch as the
    actors computed them. Why the same batches: the pipeline pads each length-sorted batch to its
    longest text, and the padded shape moves the last float bits; on these texts, one call on all
    2,000 and calls on 100-text chunks differ by up to 1.5e-6 in a score, in one process, no Ray."""
    pipe = pipeline(task, model=model)
    texts, batch_ids = out["text"].to_pylist(), out["batch"].to_pylist()
    results = [None] * len(texts)
    for b in dict.fromkeys(batch_ids):
        rows = [i for i, x in enumerate(batch_ids) if x == b]
        for i, r in zip(rows, pipe([texts[i] for i in rows], **options)):
            results[i] = r
    return results


def check_rows(out, paths, texts):
    """Every input row exactly once, with its text and its own columns; each file's rows in order (a
    union of datasets interleaves its inputs' blocks, but keeps each one's order)."""
    assert out.num_rows == N * len(paths)  # none lost, none duplicated
    for path in paths:
        part = out.filter(pa.compute.equal(out["input_file"], str(path)))
        assert part["input_row"].to_pylist() == list(range(1, N + 1)), path
        assert part["text"].to_pylist() == texts, path
        if not str(path).endswith(".txt"):  # the input's own columns are carried through
            assert part["id"].to_pylist() == list(range(N)), path
            assert part["gold"].to_pylist() == [j % 2 for j in range(N)], path


def check_classification(out, expected):
    assert out["label"].to_pylist() == [r["label"] for r in expected]
    diff = np.abs(np.array(out["score"].to_pylist()) - [r["score"] for r in expected])
    assert diff.max() <= 1e-6, diff.max()


@pytest.mark.slow
def test_default_model_classification_equals_the_pipeline_with_a_worker_killed(local_ray, inputs, texts):
    """minibert's SST-2 model on 2,000 texts, 20 calls of 100 rows over 2 actors; one actor is killed
    once the first results are out. Ray restarts it and runs its unfinished calls again."""
    out, (killed, rows_before_kill) = predict_files("sentiment-analysis", [inputs["parquet"]], kill_a_worker=True)
    assert rows_before_kill < out.num_rows // 2, "the kill came late: most of the run was done"
    assert killed not in actor_pids()
    check_rows(out, [inputs["parquet"]], texts)
    check_classification(out, one_process("sentiment-analysis", out))
    assert "error" not in out.column_names  # on_error="fail" (the default) adds no column
    assert len(set(out["batch"].to_pylist())) == N // RAY_BATCH


FORMATS = ("parquet", "text", "jsonl", "csv")


@pytest.mark.slow
def test_classification_equals_the_pipeline_in_every_format(local_ray, inputs, texts, tiny):
    paths = [inputs[fmt] for fmt in FORMATS]
    out, _ = predict_files("text-classification", paths, model=tiny["text-classification"])
    check_rows(out, paths, texts)
    check_classification(out, one_process("text-classification", out, tiny["text-classification"]))


@pytest.mark.slow
def test_embeddings_equal_the_pipeline_in_every_format(local_ray, inputs, texts, tiny):
    paths = [inputs[fmt] for fmt in FORMATS]
    out, _ = predict_files("feature-extraction", paths, model=tiny["feature-extraction"], on_error="record")
    check_rows(out, paths, texts)
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    vectors = out["embedding"].combine_chunks().flatten().to_numpy().reshape(-1, 32)
    expected = one_process("feature-extraction", out, tiny["feature-extraction"], pooling="mean", normalize=True)
    diff = np.abs(vectors - np.stack(expected))
    assert diff.max() <= 1e-6, diff.max()
    assert out["error"].null_count == out.num_rows


def close(got, want, path="result"):
    """`got` (from Arrow) equals `want` (the pipeline's): the same structure, floats within 1e-6."""
    if isinstance(want, dict):
        assert set(got) == set(want), path
        for k in want:
            close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            close(g, w, f"{path}[{i}]")
    elif isinstance(want, (float, np.floating)):
        assert abs(got - float(want)) <= 1e-6, (path, got, want)
    else:
        assert got == want, (path, got, want)


def test_every_task_s_columns_equal_the_pipeline(tiny):
    """The columns each task adds (label and score, the K best labels, entities, the candidates per mask,
    zero-shot labels and scores) hold the pipeline's results, on the class the actors run (no Ray needed
    for that); error rows get nulls."""
    some = [t for t in sst2_texts(60)] + [None]
    masked = [" ".join(["[MASK]" if j == 1 else w for j, w in enumerate(t.split())]) for t in some[:-1]] + [None]
    runs = [("text-classification", some, dict(top_k=2), lambda r: {"label": r[0]["label"], "score": r[0]["score"], "labels": r}),
            ("token-classification", some, dict(aggregation_strategy="none"), lambda r: {"entities": r}),
            ("token-classification", some, dict(aggregation_strategy="simple"), lambda r: {"entities": r}),
            ("fill-mask", masked, dict(top_k=3), lambda r: {"masks": r if r and isinstance(r[0], list) else [r]}),
            ("zero-shot-classification", some, dict(candidate_labels=["praise", "complaint", "other"]),
             lambda r: {"labels": r["labels"], "scores": r["scores"]})]
    for task, rows, options, columns in runs:
        table = mray.Predict(task, model=tiny[task], on_error="record", **options)(pa.table({"text": pa.array(rows, pa.string())}))
        expected = pipeline(task, model=tiny[task])(rows[:-1], **options)
        for i, want in enumerate(expected):
            close({c: table[c][i].as_py() for c in columns(want)}, columns(want), f"{task} row {i}")
        assert all(table[c][len(rows) - 1].as_py() is None for c in columns(expected[0])), task
        assert table["error"].to_pylist()[-1] == f"row {len(rows) - 1} of a batch: 'text' is null, expected a string"
    assert sum(len(e) for e in table.column("labels").to_pylist()[:-1]) == 3 * 60


@pytest.mark.slow  # each task's columns run by default; these are their options
def test_embed_options_and_rerank_columns_equal_the_pipeline(tiny, tmp_path):
    """`embed`'s options (prompt, truncate_dim, pooling, normalize) reach the actor's pipeline, and `rerank` gives
    each row its score against the query, as the pipeline does (on the class the actors run; no Ray needed)."""
    import shutil

    from reference import make_checkpoint, minilm_dir

    rows = sst2_texts(40)
    options = dict(prompt="query: ", truncate_dim=16, pooling="cls", normalize=True)
    table = mray.Predict("feature-extraction", model=tiny["feature-extraction"], **options)(pa.table({"text": rows}))
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 16)
    vectors = table["embedding"].combine_chunks().flatten().to_numpy().reshape(-1, 16)
    want = np.stack(pipeline("feature-extraction", model=tiny["feature-extraction"])(rows, **options))
    assert np.abs(vectors - want).max() <= 1e-6
    plain = np.stack(pipeline("feature-extraction", model=tiny["feature-extraction"])(rows, pooling="cls", normalize=True))
    assert np.abs(vectors - plain[:, :16] / np.linalg.norm(plain[:, :16], axis=1, keepdims=True)).max() > 1e-3  # the prompt counted

    folder = make_checkpoint(tmp_path, "bert", "sequence-classification", num_labels=1, hidden_size=32, num_attention_heads=4,
                             intermediate_size=37, num_hidden_layers=2, vocab_size=30522)
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(minilm_dir(), name), folder)
    table = mray.Predict("rerank", model=folder, query="a moving film")(pa.table({"text": rows}))
    want = [r["score"] for r in pipeline("rerank", model=folder)(rows, query="a moving film")]
    assert np.abs(np.array(table["score"].to_pylist()) - want).max() <= 1e-6 and len(set(want)) > 1


@pytest.mark.slow  # test_every_task_s_columns_equal_the_pipeline runs QA by default
def test_question_answering_columns_equal_the_pipeline(tiny):
    """A question column and a context column in, the best span (and the K best) out, as the pipeline
    gives them for the same {"question", "context"} inputs; a row without a context gets an error."""
    contexts = sst2_texts(40)
    questions = [f"What is {t.split()[0]}?" for t in contexts]
    batch = pa.table({"question": questions + ["Who?"], "context": contexts + [None]})
    table = mray.Predict("question-answering", model=tiny["question-answering"], on_error="record", top_k=2)(batch)
    expected = pipeline("question-answering", model=tiny["question-answering"])(
        [{"question": q, "context": c} for q, c in zip(questions, contexts)], top_k=2)
    for i, want in enumerate(expected):
        close({c: table[c][i].as_py() for c in ("score", "start", "end", "answer", "answers")},
              {**want[0], "answers": want}, f"row {i}")
    assert table["answer"][40].as_py() is None
    assert table["error"].to_pylist()[-1] == "row 40 of a batch: 'context' is null, expected a string"
    # A batch of one row (a one-line file, the last batch of a run): the pipeline gives a one-input list its
    # result itself; the columns still hold it. A row the pipeline refuses (an empty context) is an error row.
    for top_k in (None, 3):
        one = mray.Predict("question-answering", model=tiny["question-answering"], on_error="record",
                           **({"top_k": top_k} if top_k else {}))
        table = one(pa.table({"question": questions[:1] + ["Who?"], "context": contexts[:1] + [""]}))
        want = pipeline("question-answering", model=tiny["question-answering"])(
            question=questions[0], context=contexts[0], top_k=top_k or 1)
        want = want if isinstance(want, list) else [want]
        close({c: table[c][0].as_py() for c in ("score", "start", "end", "answer")}, want[0], "one row")
        if top_k:
            close(table["answers"][0].as_py(), want, "one row, top_k")
        assert table["error"].to_pylist() == [None, "row 1 of a batch: the context is empty"]
    masked = ["the [MASK] was [MASK] ."]
    table = mray.Predict("fill-mask", model=tiny["fill-mask"], top_k=2)(pa.table({"text": masked}))
    close(table["masks"][0].as_py(), pipeline("fill-mask", model=tiny["fill-mask"])(masked[0], top_k=2), "one row")


@pytest.mark.slow
def test_question_answering_through_the_command(local_ray, tiny, tmp_path, capsys):
    """qa --input: questions and contexts from their columns (the defaults: question, context), --top-k and
    --doc-stride reach the actors, --context is refused (a dataset row carries its own)."""
    contexts = sst2_texts(120)
    questions = [f"What is {t.split()[-1]}?" for t in contexts]
    source = tmp_path / "qa.jsonl"
    source.write_text("".join(json.dumps({"question": q, "context": c}) + "\n" for q, c in zip(questions, contexts)))
    out, model = tmp_path / "out", tiny["question-answering"]
    argv = ["qa", "--input", str(source), "--output", str(out), "--model", model, "--workers", "1", "--quiet"]
    assert main([*argv, "--context", str(source)]) == 1
    assert "with --input, each row's context comes from its --pair-column" in capsys.readouterr().err
    assert main([*argv, "--top-k", "2", "--doc-stride", "16"]) == 0
    table = pq.read_table(out)
    assert table["input_row"].to_pylist() == list(range(1, 121))
    assert table["question"].to_pylist() == questions
    expected = pipeline("question-answering", model=model)(
        [{"question": q, "context": c} for q, c in zip(questions, contexts)], top_k=2, doc_stride=16)
    for i, want in enumerate(expected):
        close(table["answers"][i].as_py(), want, f"row {i + 1}")
        assert table["answer"][i].as_py() == want[0]["answer"]
    assert "minibert: 120 rows in" in capsys.readouterr().err


@pytest.mark.slow
def test_other_tasks_through_the_command(local_ray, texts, tiny, tmp_path, capsys):
    """fill-mask --input: the command's own options (--top-k) reach the actors; a list column written."""
    masked = [" ".join(["[MASK]" if j == 1 else w for j, w in enumerate(t.split())]) for t in texts[:200]]
    source = tmp_path / "masked.parquet"
    pq.write_table(pa.table({"text": masked}), source)
    out = tmp_path / "out"
    assert main(["fill-mask", "--input", str(source), "--output", str(out), "--model", tiny["fill-mask"],
                 "--workers", "1", "--quiet", "--top-k", "3"]) == 0
    table = pq.read_table(out)
    assert table["input_row"].to_pylist() == list(range(1, 201))
    expected = pipeline("fill-mask", model=tiny["fill-mask"])(masked, top_k=3)  # one call, as the actor's
    for i, want in enumerate(expected):
        close(table["masks"][i].as_py(), [want], f"row {i + 1}")
    assert "minibert: 200 rows in" in capsys.readouterr().err


# -- malformed rows, both modes, through `minibert classify --input` in this process --------------
@pytest.fixture(scope="module")
def bad_text_file(tmp_path_factory):
    """A text file with an invalid UTF-8 line and a line over the limit, and a good file after it."""
    folder = tmp_path_factory.mktemp("bad")
    path = folder / "1-bad.txt"
    path.write_bytes(b"a fine review\nbad \xff byte\n" + b"x" * (mray.MAX_TEXT_BYTES + 10) + b"\n\nI hate this so much!\n")
    (folder / "2-good.txt").write_text("what a lovely day\nterrible\n", encoding="utf-8")
    return path


@pytest.mark.slow  # a Ray run of its own; the one-process readers' refusals run by default
def test_malformed_rows_recorded(local_ray, bad_text_file, tmp_path, tiny, capsys):
    out = tmp_path / "out"
    pattern = str(bad_text_file.parent / "*.txt")  # both files, in name order
    model = tiny["text-classification"]
    assert main(["classify", "--input", pattern, "--output", str(out), "--on-error", "record", "--workers", "1",
                 "--model", model]) == 0
    table = pq.read_table(out)
    good = str(bad_text_file.parent / "2-good.txt")
    assert list(zip(table["input_file"].to_pylist(), table["input_row"].to_pylist())) == \
        [(str(bad_text_file), i) for i in range(1, 6)] + [(good, 1), (good, 2)]
    assert table["error"].to_pylist() == [
        None, f"{bad_text_file}, row 2: not valid UTF-8 (byte 0xff at column 5)",
        f"{bad_text_file}, row 3: line longer than {mray.MAX_TEXT_BYTES} bytes", None, None, None, None]
    texts = ["a fine review", "", "I hate this so much!", "what a lovely day", "terrible"]
    expected = pipeline("sentiment-analysis", model=model)(texts)
    assert [table["label"][i].as_py() for i in (0, 3, 4, 5, 6)] == [r["label"] for r in expected]
    assert table["label"][1].as_py() is None and table["score"][2].as_py() is None
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert summary.startswith("minibert: 7 rows in ") and "2 with an error" in summary


def test_malformed_row_fails_naming_file_and_row(local_ray, bad_text_file, tmp_path, tiny, capsys):
    """--on-error fail (the default): the run stops with one line naming the file and the row, for a
    bad byte in a text file and for a non-string text in JSON lines."""
    model = tiny["text-classification"]
    assert main(["classify", "--input", str(bad_text_file), "--output", str(tmp_path / "o"), "--workers", "1",
                 "--model", model, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == f"minibert: error: {bad_text_file}, row 2: not valid UTF-8 (byte 0xff at column 5)\n"
    # A non-string text in JSON lines: the reader flags it, the actor stops on it (here without Ray).
    source = tmp_path / "reviews.jsonl"
    source.write_bytes(b'{"text": "fine"}\n{"text": "also fine"}\n{"text": 5}\n')
    table = pa.concat_tables(readers._read_jsonl(io.BytesIO(source.read_bytes()), str(source), "text", ["text"],
                                              mray.MAX_TEXT_BYTES))
    with pytest.raises(mray.BadRow, match=f"^{source}, row 3: 'text' is int, expected a string$"):
        mray.Predict("text-classification", model=model)(table)


# -- the command, end to end, as a user runs it --------------------------------------------------
@pytest.mark.slow
def test_cli_end_to_end_jsonl_in_jsonl_out(texts, tmp_path):
    """`minibert embed --input` in its own process, as a user runs it: a local Ray started and shut down,
    all-MiniLM-L6-v2 on 300 texts, JSON lines out, the summary line last."""
    source = tmp_path / "reviews.jsonl"
    with open(source, "w", encoding="utf-8") as f:
        for i in range(300):
            f.write(json.dumps({"id": 1000 + i, "text": texts[i]}) + "\n")
    out = tmp_path / "emb"
    cmd = [sys.executable, "-m", "minibert", "embed", "--input", str(source), "--output", str(out),
           "--output-format", "jsonl", "--workers", "2"]
    p = subprocess.run(cmd, capture_output=True, env=ENV, timeout=300)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    assert " INFO " not in p.stderr.decode() and "max_errored_blocks" not in p.stderr.decode()  # no progress log lines
    last = p.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("minibert: 300 rows in ") and " rows/s" in last and "2 worker(s) x 1 thread(s)" in last
    parts = sorted(f for f in out.iterdir() if f.name != "_SUCCESS")  # the marker of a complete output
    records = [json.loads(line) for f in parts for line in f.read_text().splitlines()]
    assert [r["input_row"] for r in records] == list(range(1, 301))
    assert [r["id"] for r in records] == list(range(1000, 1300))
    vectors = np.array([r["embedding"] for r in records], np.float32)
    # The command gives each actor 1,024 rows a call, so the 300 texts are one batch, as they are for
    # `minibert embed --file` in one process.
    expected = pipeline("feature-extraction")(texts[:300], pooling="mean", normalize=True)
    assert np.abs(vectors - expected).max() <= 1e-6
    # the same output folder again is refused before anything starts
    p = subprocess.run(cmd, capture_output=True, env=ENV, timeout=120)
    assert p.returncode == 1 and p.stderr.decode().strip() == \
        f"minibert: error: --output {out} exists and is not empty (add --overwrite to replace it)"


@pytest.mark.parametrize("argv, message", [
    (["--input", "/nonexistent/x.txt", "--output", "o"], "no such file: /nonexistent/x.txt"),
    (["--input", "/nonexistent/*.jsonl", "--output", "o"], "no files match /nonexistent/*.jsonl"),
    (["--input", "{csv}", "--column", "review", "--output", "o"], "{csv}: no column 'review'; columns: id, text, gold"),
    (["--input", "{jsonl}", "--output", "o", "--input-format", "parquet"], "{jsonl}: cannot read it as parquet: "),
    (["--input", "{jsonl}", "{csv}", "--output", "o"], "the inputs mix formats (jsonl: {jsonl}, csv: {csv}); "),
    (["--input", "{csv}"], "--input needs --output FOLDER"),
    (["--input", "{csv}", "--output", "o", "--address", "127.0.0.1:9"], "cannot reach the Ray cluster at 127.0.0.1:9"),
    (["--input", "{csv}", "--output", "o", "a text"], "give --input or TEXT/--file, not both"),
    (["--input", "{csv}", "--output", "full"], "--output full exists and is not empty (add --overwrite to replace it)"),
    (["--input", "{csv}", "--output", "o", "--model", "/nonexistent/model"], "no such folder: /nonexistent/model"),
    (["--input", "{csv}", "--output", "o", "--pair"], "with --input, name the second text's column with --pair-column"),
    (["--input", "{csv}", "--output", "o", "--pair-column", "premise"], "{csv}: no column 'premise'; columns: id, text, gold"),
    (["ner", "--input", "{csv}", "--output", "o"], "ner has no offline default model: pass --model"),
    (["qa", "--input", "{text}", "--output", "o", "--model", "/nonexistent/model"],
     "{text}: a text file holds one text per line; question-answering also reads a column 'context': give JSONL"),
    (["zero-shot", "--input", "{csv}", "--output", "o"], "zero-shot needs --labels A,B,C"),
    (["--workers", "2", "a text"], "--workers goes with --input (a dataset run on Ray)"),
    (["--output", "o", "a text"], "--output goes with --input (a dataset run on Ray)"),
])
def test_bad_commands_are_one_line_before_any_model(inputs, tmp_path, capsys, monkeypatch, argv, message):
    paths = inputs
    monkeypatch.chdir(tmp_path)

    def started(*a, **k):
        raise AssertionError("Ray or a model was started for a command that is wrong")

    monkeypatch.setattr(actor, "predict", started)
    monkeypatch.setattr(ray, "init", started)
    monkeypatch.setattr(pipelines, "pipeline", started)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "part-0.parquet").write_bytes(b"earlier results")
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]
    message = message.format(**{k: str(v) for k, v in paths.items()})
    command = [] if argv[0] in ("ner", "zero-shot", "qa") else ["classify"]
    assert main([*command, *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"minibert: error: {message}") and err.count("\n") == 1, err
    assert (tmp_path / "full" / "part-0.parquet").read_bytes() == b"earlier results"


def test_minibert_does_not_import_ray_unless_asked():
    """The core, the command and its parser (--input options included) import neither Ray nor pyarrow."""
    code = ("import sys, minibert, minibert.cli, minibert.pipelines, minibert.ray\n"
            "minibert.cli.build_parser().parse_args(['classify', '--input', 'x.parquet', '--output', 'o'])\n"
            "print(sorted(m for m in ('ray', 'pyarrow', 'pandas', 'tensorflow') if m in sys.modules))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, env=ENV, timeout=120)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    assert p.stdout.decode().strip() == "[]"


def test_ray_missing_is_one_line_with_the_install_command(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from minibert.cli import main\n"
            f"sys.exit(main(['classify', '--input', {str(SST2)!r}, '--input-format', 'text', '--output', 'o']))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, env=ENV, timeout=60, cwd=tmp_path)
    assert p.returncode == 1
    assert p.stderr.decode().strip() == 'minibert: error: Ray is not installed; install the extra: pip install "minibert-tf[ray]"'


# -- the output folder: nothing lost ---------------------------------------------------------------
def _snapshot(folder):
    """Every file under `folder` with its bytes: what must not change."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("layout", ["output is the input folder", "output holds an input file",
                                    "output inside the input folder"])
def test_an_output_that_overlaps_an_input_is_refused_before_anything_is_deleted(tmp_path, capsys, monkeypatch, layout):
    monkeypatch.setattr(actor, "predict", lambda *a, **k: pytest.fail("a run started"))
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a fine review\nterrible\n", encoding="utf-8")
    (data / "b.txt").write_text("what a lovely day\n", encoding="utf-8")
    before = _snapshot(tmp_path)
    inputs, output, message = {
        "output is the input folder": ([str(data)], data, f"--output {data} is the input {data}"),
        "output holds an input file": ([str(data / "a.txt")], data, f"--output {data} holds the input {data / 'a.txt'}"),
        "output inside the input folder": ([str(data)], data / "out", f"--output {data / 'out'} lies inside the input folder {data}"),
    }[layout]
    assert main(["classify", "--input", *inputs, "--output", str(output), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"minibert: error: {message}") and err.count("\n") == 1, err
    assert _snapshot(tmp_path) == before  # byte for byte, nothing added or removed


def test_overwrite_replaces_only_a_previous_minibert_output(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(actor, "predict", lambda *a, **k: pytest.fail("a run started"))
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    source = tmp_path / "in.txt"
    source.write_text("fine\n", encoding="utf-8")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.parquet").write_bytes(b"four years of work")
    before = _snapshot(tmp_path)
    assert main(["classify", "--input", str(source), "--output", str(mine), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert f"--output {mine} has no minibert _SUCCESS marker" in err and err.count("\n") == 1, err
    (mine / "_SUCCESS").write_text('{"writer": "minibert"}')  # marked, but holding a file minibert never writes
    (mine / "notes.txt").write_text("mine")
    before = _snapshot(tmp_path)
    assert main(["classify", "--input", str(source), "--output", str(mine), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert f"--output {mine} holds notes.txt, which minibert did not write" in err, err
    assert _snapshot(tmp_path) == before


@pytest.mark.slow  # two full runs on Ray
def test_a_failed_rerun_leaves_the_previous_output_and_a_good_one_replaces_it(local_ray, tmp_path, tiny, capsys):
    """The output is written beside the folder and moved into place, marked _SUCCESS, only when complete."""
    model = tiny["text-classification"]
    good, bad, out = tmp_path / "good.txt", tmp_path / "bad.txt", tmp_path / "out"
    good.write_text("a fine review\nterrible\n", encoding="utf-8")
    bad.write_bytes(b"fine\nbad \xff byte\n")
    argv = ["classify", "--output", str(out), "--workers", "1", "--model", model, "--quiet", "--overwrite"]
    assert main([*argv, "--input", str(good)]) == 0
    marker = json.loads((out / "_SUCCESS").read_text())
    assert marker["writer"] == "minibert" and marker["rows"] == 2 and marker["errors"] == 0
    first = _snapshot(out)
    assert main([*argv, "--input", str(bad)]) == 1  # the bad row stops the run
    assert "row 2: not valid UTF-8" in capsys.readouterr().err
    assert _snapshot(out) == first  # the previous complete output, byte for byte
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left
    assert main([*argv, "--input", str(bad), "--on-error", "record"]) == 0  # a good rerun replaces it
    assert pq.read_table(out)["input_file"].to_pylist() == [str(bad)] * 2
    assert json.loads((out / "_SUCCESS").read_text())["errors"] == 1


@pytest.mark.parametrize("when", ["starting", "writing"])
# The default suite stops runs with SIGTERM; the slow suite with Ctrl-C too.
@pytest.mark.parametrize("stop", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_stopped_run_leaves_no_partial_output(tmp_path, tiny, stop, when):
    """SIGTERM or Ctrl-C while Ray starts (the staging folder is there) or once the first files are written
    (after ray.init, which installs a SIGTERM handler of its own): the staging folder goes, and no output
    folder is left."""
    import time

    source = tmp_path / "many.txt"
    # 20 times the usual rows: the run is still writing when the signal comes, however fast the machine
    source.write_text("\n".join(sst2_texts(N) * 20) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "minibert", "classify", "--input", str(source), "--output", str(out),
           "--model", tiny["text-classification"], "--workers", "1", "--quiet"]
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def ready():
        staging = list(tmp_path.glob(".out.minibert-*"))
        return bool(staging) and (when == "starting" or any(staging[0].iterdir()))

    deadline = time.monotonic() + 120
    while not ready() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.02)
    assert p.poll() is None, p.stderr.read().decode()[-2000:]
    p.send_signal(stop)
    p.wait(timeout=120)
    assert p.returncode != 0, "the run ignored the signal and finished"
    assert not out.exists()
    assert list(tmp_path.glob(".out.*")) == []


def test_workers_times_threads_past_the_cluster_cpus_is_refused_before_any_actor(local_ray, tmp_path, tiny, capsys):
    """Ray would wait forever for actors it cannot place: refused, naming both numbers and the cluster's CPUs."""
    source = tmp_path / "a.txt"
    source.write_text("fine\n", encoding="utf-8")
    argv = ["classify", "--input", str(source), "--output", str(tmp_path / "out"), "--model",
            tiny["text-classification"], "--quiet"]
    for extra, asked in ((["--threads", "1000"], "--workers 1 x --threads 1000 asks for 1000 CPUs"),
                         (["--workers", "1000"], "--workers 1000 x --threads 1 asks for 1000 CPUs"),
                         (["--workers", "2", "--threads", "2"], "--workers 2 x --threads 2 asks for 4 CPUs")):
        assert main([*argv, *extra]) == 1
        assert capsys.readouterr().err == (f"minibert: error: {asked}, but the Ray cluster has 2: Ray would wait for "
                                           "them forever; ask for at most 2 in all\n")
    assert not (tmp_path / "out").exists() and [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_empty_input_file_gives_an_empty_output(local_ray, tmp_path, tiny, capsys):
    """Zero rows: exit 0, a complete output folder that says 0 rows, as the one-process command prints nothing."""
    source, out = tmp_path / "empty.txt", tmp_path / "out"
    source.write_bytes(b"")
    assert main(["classify", "--input", str(source), "--output", str(out), "--model", tiny["text-classification"],
                 "--workers", "1", "--quiet"]) == 0
    assert json.loads((out / "_SUCCESS").read_text())["rows"] == 0
    assert mray.count_output(str(out), "parquet") == (0, 0)
    assert capsys.readouterr().err.startswith("minibert: 0 rows in ")


@pytest.mark.slow
def test_record_mode_keeps_refused_rows_writes_jsonl_and_quiet_is_quiet(local_ray, tmp_path, tiny, capfd):
    """Through the command: rows the task refuses and a JSON field that changes type are error rows; the JSON
    lines output is `*.jsonl` with `/` as it is; with --quiet stderr holds minibert's lines only (no core
    worker line, no Ray advice on max_errored_blocks before minibert's own error)."""
    source, out = tmp_path / "reviews.jsonl", tmp_path / "out"
    lines = [{"text": "the [MASK] was good / fine .", "n": 1}, {"text": "no mask here", "n": 2},
             {"text": "a [MASK] day .", "n": "three"}, {"text": "one [MASK] more .", "n": 4}]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    argv = ["fill-mask", "--input", str(source), "--model", tiny["fill-mask"], "--workers", "2", "--quiet",
            "--top-k", "2"]
    assert main([*argv, "--output", str(out), "--output-format", "jsonl", "--on-error", "record"]) == 0
    err = capfd.readouterr().err
    assert all(line.startswith("minibert: ") for line in err.splitlines()), err
    assert "minibert: warning: --workers 2 x --threads 1 takes all 2 CPUs of the Ray cluster" in err
    names = sorted(p.name for p in out.iterdir() if p.name != "_SUCCESS")
    assert names and all(n.endswith(".jsonl") for n in names), names
    text = "".join((out / n).read_text(encoding="utf-8") for n in names)
    assert "\\/" not in text and "good / fine" in text
    rows = [json.loads(line) for line in text.splitlines()]
    assert [r["input_row"] for r in rows] == [1, 2, 3, 4]
    assert [r["error"] for r in rows] == [
        None, f"{source}, row 2 has no mask token [MASK]: fill-mask predicts the word at each [MASK]",
        f'{source}, row 3: field \'n\' is a string ("three"), but a number in row 1', None]
    want = pipeline("fill-mask", model=tiny["fill-mask"])([lines[0]["text"], lines[3]["text"]], top_k=2)
    close([rows[0]["masks"], rows[3]["masks"]], [[w] for w in want], "masks")
    assert main([*argv, "--output", str(tmp_path / "failed")]) == 1  # --on-error fail: the first bad row stops it
    err = capfd.readouterr().err.splitlines()
    assert err[-1] == f"minibert: error: {source}, row 2 has no mask token [MASK]: fill-mask predicts the word at each [MASK]"
    assert all(line.startswith("minibert: warning: --workers 2") for line in err[:-1]), err


def test_a_signal_another_handler_swallowed_still_stops_the_run():
    """ray.init installs a SIGTERM handler of its own, and what it raises can be swallowed: a SIGTERM taken by
    such a handler is still seen (Python's wakeup fd), so the run stops before publishing. No Ray needed."""
    from minibert.ray.job import _StopSignals

    before = signal.getsignal(signal.SIGTERM)
    with _StopSignals() as stop:
        signal.signal(signal.SIGTERM, lambda signum, frame: None)  # a handler that swallows it, as in ray.init
        os.kill(os.getpid(), signal.SIGTERM)
        stop.arm()
        with pytest.raises(SystemExit) as raised:
            stop.check()
    assert raised.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
