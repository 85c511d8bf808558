"""The LiteRT engine: float32 parity with transformers on every family (every head in the slow suite), what
falls back to Keras, and the flatbuffer cache (damaged entries rebuilt, races, read-only caches)."""
import errno
import os
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

import minibert
from minibert import engine
from minibert.auto import FAMILIES
from reference import TOL, at_real_tokens, make_checkpoint, max_diffs, reference

pytest.importorskip("ai_edge_litert", reason="ai-edge-litert publishes no wheel for this platform")

IDS = [[101, 5, 17, 42, 88, 9, 33, 102], [101, 7, 3, 102, 0, 0, 0, 0], [101, 60, 102, 0, 0, 0, 0, 0]]
MASK = [[1] * 8, [1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]]
TYPES = [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0]]
# RoBERTa-like: pads are 1, and one row is padded on the left (its positions depend on the mask).
RB_IDS = [[0, 5, 17, 42, 88, 9, 33, 2], [0, 7, 3, 2, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 60, 2]]
RB_MASK = [[1] * 8, [1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1, 1]]
from family_configs import SMALL_ENGINE as SMALL  # noqa: E402  (the families' small configs, as these tests build them)
AUTO = {"pretraining": minibert.ElectraForPreTraining, "model": minibert.AutoModel,
        "sequence-classification": minibert.AutoModelForSequenceClassification,
        "multiple-choice": minibert.AutoModelForMultipleChoice,
        "token-classification": minibert.AutoModelForTokenClassification,
        "question-answering": minibert.AutoModelForQuestionAnswering, "masked-lm": minibert.AutoModelForMaskedLM}
PAIRS = [(family, head) for family, heads in sorted(FAMILIES.items()) for head in sorted(heads)]


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """One flatbuffer cache for the module (entries are keyed by content), and fresh once-only warnings."""
    monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path_factory.getbasetemp() / "engine-cache"))
    monkeypatch.setattr(engine, "_warned", set())


def inputs(family, head):
    from minibert.families import REGISTRY

    ids, mask = (RB_IDS, RB_MASK) if REGISTRY[family].positions == "from padding" else (IDS, MASK)
    types = TYPES if REGISTRY[family].token_types else None
    if head == "multiple-choice":  # 2 questions x 3 choices, padded differently per choice
        reorder = lambda x: None if x is None else [x, [x[2], x[0], x[1]]]
        return reorder(ids), reorder(mask), reorder(types), np.asarray(reorder(mask)).reshape(-1, 8)
    return ids, mask, types, mask


def check_family_head(tmp_path, family, head):
    labels = 2 if head == "question-answering" else 3
    folder = make_checkpoint(tmp_path, family, head, **{"vocab_size": 120, "max_position_embeddings": 40,
                                                        "num_labels": labels, **SMALL[family]})
    ids, mask, types, flat_mask = inputs(family, head)
    ref = reference(folder, ids, mask, types, head=head)
    keras_model = AUTO[head].from_pretrained(folder, engine="keras")
    model = AUTO[head].from_pretrained(folder, engine="litert")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to Keras would warn: here it must not happen
        out = model(ids, attention_mask=mask, token_type_ids=types)
    assert model.compiled_forward() is model._compiled["litert"]  # the flatbuffer ran, not the Keras graphs
    want = keras_model(ids, attention_mask=mask, token_type_ids=types)
    assert type(out) is type(want) and list(out) == list(want)  # the same output object, field for field
    for key in out:
        assert type(out[key]) is type(want[key]) and out[key].shape == want[key].shape, key
    per_token = [key for key in ("logits", "start_logits", "end_logits")  # (B, T) or (B, T, V): at real tokens only,
                 if key in ref and np.shape(ref[key])[:2] == np.shape(flat_mask)]  # as hidden states are compared
    diffs = max_diffs(SimpleNamespace(**at_real_tokens(out, per_token, flat_mask)),
                      at_real_tokens(ref, per_token, flat_mask), flat_mask)
    assert diffs, (list(out), list(ref))
    for key, d in diffs.items():
        assert d <= TOL[key], f"{family} {head} {key}: max |diff| {d:.3g} > {TOL[key]:g}"
    return model, (ids, mask, types), ref


# BERT (token types) and RoBERTa (positions from the mask, a row padded on the left) in the default suite;
# each conversion costs seconds, so the other families and every head are in the slow suite.
@pytest.mark.parametrize("family", [pytest.param(f, marks=[] if f in ("bert", "roberta") else [pytest.mark.slow])
                                    for f in sorted(FAMILIES)])
def test_float32_parity_every_family(tmp_path, family):
    """The float32 flatbuffer is held to the Keras path's parity: logits within 1e-5 of transformers."""
    model, (ids, mask, types), ref = check_family_head(tmp_path, family, "sequence-classification")
    # What the engine cannot express runs on the Keras layers, without a word: hidden states and attentions.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = model(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True, output_attentions=True)
    assert len(full.hidden_states) == len(ref["hidden_states"]) and len(full.attentions) == len(ref["attentions"])
    assert max_diffs(full, ref, mask)["attentions"] <= TOL["attentions"]


@pytest.mark.slow
@pytest.mark.parametrize("family,head", PAIRS)
def test_float32_parity_every_head(tmp_path, family, head):
    check_family_head(tmp_path, family, head)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny BERT classifier with the uncased vocabulary's size, so that a real tokenizer can feed it."""
    return make_checkpoint(tmp_path_factory.mktemp("engine-tiny"), "bert", "sequence-classification", num_labels=3,
                           hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2,
                           vocab_size=30522, max_position_embeddings=40)


def logits(model):
    return model(IDS, attention_mask=MASK, token_type_ids=TYPES).logits.numpy()


def test_gradients_and_buckets(tiny):
    """A GradientTape gets the Keras graph (a flatbuffer has no gradients); small inputs pad to shared buckets."""
    import tensorflow as tf

    model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="litert")
    want = logits(model)
    fwd = model.compiled_forward()
    assert isinstance(fwd, engine.LiteRTForward)
    with tf.GradientTape() as tape:
        out = model(IDS, attention_mask=MASK, token_type_ids=TYPES).logits
        loss = tf.reduce_sum(out)
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads) and np.abs(out.numpy() - want).max() <= 1e-5
    ids = np.asarray(IDS)
    for T in (3, 5, 8):  # (3, T) pads to the (4, 16) bucket: one prepared shape for all three
        one = model(ids[:, :T], attention_mask=np.asarray(MASK)[:, :T]).logits.numpy()
        alone = model(ids[:1, :T], attention_mask=np.asarray(MASK)[:1, :T]).logits.numpy()
        assert np.abs(one[:1] - alone).max() <= 1e-5
    assert (4, 16) in fwd.shapes
    # A row with no real token runs at its own shape, as transformers computes it (uniform attention over its keys).
    empty = np.asarray(MASK)
    empty[2] = 0
    got = model(IDS, attention_mask=empty).logits.numpy()
    eager = model.call(*model.prepare_inputs(IDS, empty)).logits.numpy()  # the Keras layers, no compilation
    assert np.abs(got - eager).max() <= 1e-5 and (3, 8) in fwd.shapes


def entry(model):
    return model.compiled_forward().folder


def test_damaged_entry_is_rebuilt(tiny):
    model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="litert")
    want, folder = logits(model), entry(model)
    flatbuffer = os.path.join(folder, engine.MODEL_FILE)
    size = os.path.getsize(flatbuffer)
    with open(flatbuffer, "r+b") as f:
        f.truncate(size // 2)
    again = minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="litert")
    with pytest.warns(UserWarning, match="damaged or stale; rebuilding"):
        got = logits(again)
    assert entry(again) == folder and os.path.getsize(flatbuffer) == size
    assert np.abs(got - want).max() <= 1e-6


@pytest.mark.slow
def test_entry_of_another_engine_version_is_rebuilt(tiny):
    model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="litert")
    want, folder = logits(model), entry(model)
    info = os.path.join(folder, engine.INFO_FILE)
    import json

    with open(info) as f:
        written = json.load(f)
    written["engine"] = "0"
    with open(info, "w") as f:
        json.dump(written, f)
    third = minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="litert")
    with pytest.warns(UserWarning, match="damaged or stale"):
        assert np.abs(logits(third) - want).max() <= 1e-6
    assert engine.read_entry(folder)["engine"] == engine.VERSION


@pytest.mark.slow
def test_a_builder_that_loses_the_race_keeps_the_winners_entry(tiny):
    """Two processes converting the same model: the second rename fails, and the first's intact entry is used."""
    model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="litert")
    want, folder = logits(model), entry(model)
    before = os.stat(os.path.join(folder, engine.MODEL_FILE)).st_mtime_ns
    engine._convert(model, os.path.dirname(folder), folder)  # the late builder
    assert os.stat(os.path.join(folder, engine.MODEL_FILE)).st_mtime_ns == before
    assert engine.read_entry(folder) is not None
    assert not [n for n in os.listdir(os.path.dirname(folder)) if n.startswith(".building-")
                and not os.listdir(os.path.join(os.path.dirname(folder), n))]  # its build folder is gone
    assert np.abs(logits(minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="litert")) - want).max() == 0


@pytest.mark.slow
def test_read_only_cache_falls_back_to_a_private_temp_folder(tiny, tmp_path, monkeypatch):
    import tempfile

    root, real_makedirs = engine.cache_root(), os.makedirs

    def read_only(path, *args, **kwargs):
        if os.fspath(path).startswith(root):
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", read_only)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="litert")
    logits(model)
    assert entry(model).startswith(str(tmp_path / f"minibert-{os.getuid()}" / "litert"))


def test_engine_missing_or_conversion_failing_runs_keras(tiny, monkeypatch):
    keras_model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="keras")
    want = logits(keras_model)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # an import that fails
        model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="litert")
        with pytest.warns(UserWarning, match="ai-edge-litert is not installed") as caught:
            assert np.abs(logits(model) - want).max() <= 1e-6
            logits(model)
        assert len([w for w in caught if "litert" in str(w.message)]) == 1  # said once
    monkeypatch.setenv("MINIBERT_CACHE", os.environ["MINIBERT_CACHE"] + "-fresh")  # nothing cached: it must convert
    import tensorflow as tf

    def refuse(*args, **kwargs):
        raise RuntimeError("the converter refused an op")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", refuse)
    model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="litert")
    with pytest.warns(UserWarning, match="could not convert .*the converter refused an op.*runs on Keras"):
        assert np.abs(logits(model) - want).max() <= 1e-6


def test_choosing_the_engine(tiny, monkeypatch):
    monkeypatch.setenv(engine.ENV, "litert")
    model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny)
    assert model.engine == "litert"
    assert minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="keras").engine == "keras"
    with pytest.raises(ValueError, match="engine must be one of keras, litert, got 'tflite'"):
        minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="tflite")
    with pytest.raises(ValueError, match="int8' runs only on the litert engine"):
        minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="keras", dtype="int8")
    monkeypatch.setenv(engine.ENV, "nonsense")
    with pytest.warns(UserWarning, match="MINIBERT_ENGINE='nonsense' is not an engine"):
        assert engine.engine_name() in engine.ENGINES
    monkeypatch.delenv(engine.ENV)
    from minibert import cpu

    for isa, want in (("avx512", "litert"), ("amx", "keras"), ("avx2", "keras"), ("other", "keras")):
        monkeypatch.setattr(cpu, "isa", lambda isa=isa: isa)
        assert engine.engine_name() == want, isa  # with no argument and no MINIBERT_ENGINE: the CPU's rule
    monkeypatch.undo()
    model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="keras")
    tok = minibert.AutoTokenizer.from_pretrained(_minilm())
    pipe = minibert.pipeline("text-classification", model=model, tokenizer=tok, engine="litert")
    assert pipe.model.engine == "litert"
    assert pipe("a film")[0]["label"] in model.config.id2label.values()
    assert isinstance(model.compiled_forward(), engine.LiteRTForward)


def _minilm():
    from reference import minilm_dir

    return minilm_dir()


def test_int8_is_close_to_float32(tiny):
    f32 = logits(minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="litert"))
    model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny, dtype="int8")
    assert model.engine == "litert" and model.dtype_name == "int8"
    got = logits(model)
    assert 0 < np.abs(got - f32).max() <= 1e-2  # quantised weights: close, not equal
    assert entry(model) != entry(minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="litert"))


def _classifier_folder(tiny, tmp_path):
    """The tiny classifier with a real tokenizer beside it, as a pipeline needs."""
    import shutil

    folder = tmp_path / "classifier"
    shutil.copytree(tiny, folder)
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(_minilm(), name), folder)
    return folder


def test_the_command_line_chooses_the_engine(tiny, tmp_path):
    """`--engine litert` runs the compiled model (no TensorFlow once converted), whatever MINIBERT_ENGINE says."""
    import json
    import subprocess

    folder = _classifier_folder(tiny, tmp_path)
    text = "a gripping film"
    want = minibert.pipeline("text-classification", model=str(folder), engine="litert")(text)[0]  # converts
    code = ("import sys; from minibert import cli; rc = cli.main(sys.argv[1:]); "
            "print(rc, 'tensorflow' in sys.modules)")
    env = {**os.environ, "MINIBERT_ENGINE": "keras", "PYTHONPATH": os.pathsep.join(sys.path)}
    for engine_flag, tf_expected in (("litert", False), ("keras", True)):
        run = subprocess.run([sys.executable, "-c", code, "classify", "--engine", engine_flag, "--model", str(folder),
                              "--format", "jsonl", text], capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr
        *lines, last = run.stdout.strip().splitlines()
        assert last == f"0 {tf_expected}", (engine_flag, run.stdout, run.stderr)
        got = json.loads(lines[-1])
        assert got["label"] == want["label"] and abs(got["score"] - want["score"]) <= 1e-5


def test_a_converted_model_runs_without_tensorflow(tiny, tmp_path):
    """A pipeline over a folder converted before starts without importing TensorFlow, with the same results."""
    import json
    import subprocess

    folder = _classifier_folder(tiny, tmp_path)
    texts = ["a gripping film", "dull and far too long, with nothing to say"]
    pipe = minibert.pipeline("text-classification", model=str(folder), engine="litert", top_k=None)
    assert isinstance(pipe.model.compiled_forward(), engine.LiteRTForward)  # converted here, and recorded
    want = pipe(texts)
    code = ("import json, sys, minibert; p = minibert.pipeline('text-classification', model=sys.argv[1], top_k=None); "
            "print(json.dumps([type(p.model).__name__, 'tensorflow' in sys.modules, p(sys.argv[2:])]))")
    env = {**os.environ, "MINIBERT_ENGINE": "litert", "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-c", code, str(folder), *texts], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    cls, imported_tf, got = json.loads(run.stdout.strip().splitlines()[-1])
    assert cls == "RuntimeModel" and not imported_tf
    for a, b in zip(got, want):
        assert [r["label"] for r in a] == [r["label"] for r in b]
        assert max(abs(x["score"] - y["score"]) for x, y in zip(a, b)) <= 1e-6


@pytest.mark.slow  # two conversions
def test_a_conversion_says_so_on_a_terminal_and_logs_elsewhere(tiny, tmp_path, monkeypatch, caplog):
    """The first call converts (15-40 s on a real model): a terminal is told, once, before and after; a pipe's
    output stays clean, and the same lines go to the `minibert` logger."""
    import io
    import logging
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, where in ((Terminal(), "terminal"), (io.StringIO(), "pipe")):
        monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path / where))  # an empty cache: this call converts
        monkeypatch.setattr(sys, "stderr", stream)
        with caplog.at_level(logging.INFO, logger="minibert"):
            caplog.clear()
            model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny, engine="litert")
            logits(model)
            logits(model)  # converted already: nothing more is said
        said = stream.getvalue().splitlines()
        if where == "terminal":
            assert len(said) == 2 and "converting BertForSequenceClassification (float32)" in said[0], said
            assert str(tmp_path / where) in said[0] and said[1].startswith("minibert: converted in ")
        else:
            assert said == [] and [r.getMessage()[:21] for r in caplog.records] == ["minibert: converting ",
                                                                                     "minibert: converted i"]


def test_modernbert_past_its_window_runs_on_the_engine(tmp_path, monkeypatch):
    """Long inputs convert and run on LiteRT too: the banded local layers and (the chunk lowered to 16) the global
    layers' query chunks, a while loop inside the flatbuffer. Equal to transformers on a padded batch of 40 tokens."""
    from minibert.models import modernbert

    monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path / "cache"))  # converted with the lowered chunk: its own entry
    monkeypatch.setattr(modernbert, "GLOBAL_QUERY_CHUNK", 16)
    folder = make_checkpoint(tmp_path, "modernbert", "sequence-classification", seed=7, num_labels=3, vocab_size=120,
                             hidden_size=32, num_attention_heads=4, intermediate_size=24, num_hidden_layers=4,
                             global_attn_every_n_layers=3, local_attention=8, max_position_embeddings=64,
                             pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)
    ids = np.random.default_rng(0).integers(3, 120, size=(3, 40))
    mask = np.ones_like(ids)
    mask[1, 23:], mask[2, :15] = 0, 0  # padded on the right, and on the left
    ids[mask == 0] = 0
    ref = reference(folder, ids, mask, head="sequence-classification")
    model = minibert.AutoModelForSequenceClassification.from_pretrained(folder, engine="litert")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to Keras would warn
        got = model(ids, attention_mask=mask).logits.numpy()
    assert isinstance(model.compiled_forward(), engine.LiteRTForward)
    assert np.abs(got - ref["logits"]).max() <= TOL["logits"]
