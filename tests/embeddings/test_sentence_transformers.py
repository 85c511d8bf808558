"""sentence-transformers folders: minibert's SentenceTransformer, CrossEncoder, feature-extraction pipeline and
`embed`/`rerank` commands against sentence-transformers itself (the installed release, 5.7 when written: the
oracle loads every folder below, in both layouts, and its numbers are the expected values).

Folders are built from a tiny random BERT (LayerNorms perturbed) with the MiniLM tokenizer:
- the 5.x layout, written by sentence-transformers' own `save` (module paths, `pooling_mode`, max length in
  tokenizer_config.json);
- the 2.x-4.x layout (the Hub's: `sentence_transformers.models.*`, `pooling_mode_*_token` booleans,
  sentence_bert_config.json's max_seq_length), rewritten by hand from a saved folder;
- the 6.x layout (Normalize under `sentence_transformers.base.modules`, Dense `use_residual`), rewritten by hand
  from sentence-transformers 6.3's source (`base/modules/dense.py`, `base/modules/normalize.py`); 5.x cannot load
  it, so its expected values are 5.x's pooled vectors put through 6.3's Dense formula in torch.
"""
import json
import os
import shutil

import numpy as np
import pytest

import minibert
from minibert import sentence_transformers as mst
from reference import make_checkpoint, minilm_dir

TINY = dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2, vocab_size=30522,
            max_position_embeddings=64)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "special_tokens_map.json", "tokenizer_config.json")
TEXTS = ["I've been waiting for a HuggingFace course my whole life.", "a", "",
         "The film is a masterpiece of slow, careful storytelling, " * 4, "Hello world!", "short text here"]
TOL = 1e-5


def with_tokenizer(folder):
    for name in TOKENIZER_FILES:
        shutil.copy(os.path.join(minilm_dir(), name), folder)
    return str(folder)


def read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)


def save_st(folder, base, pooling, include_prompt=True, dense=None, normalize=False, max_seq_length=None, **kwargs):
    """A folder written by sentence-transformers' own save (its current layout)."""
    import torch
    from sentence_transformers import SentenceTransformer, models

    torch.manual_seed(1)
    modules = [models.Transformer(base, max_seq_length=max_seq_length),
               models.Pooling(32, pooling_mode=pooling, include_prompt=include_prompt)]
    if dense:
        n_in = 32 * (len(pooling) if isinstance(pooling, tuple) else 1)
        for n_out, act in dense:
            modules.append(models.Dense(n_in, n_out, activation_function=act))
            n_in = n_out
    if normalize:
        modules.append(models.Normalize())
    SentenceTransformer(modules=modules, device="cpu", **kwargs).save(str(folder))
    return str(folder)


def to_legacy(folder):
    """Rewrite a saved folder in the 2.x-4.x layout the Hub's folders have."""
    modules = read(os.path.join(folder, "modules.json"))
    for m in modules:
        m["type"] = "sentence_transformers.models." + m["type"].rsplit(".", 1)[-1]
        path = os.path.join(folder, m["path"])
        if m["type"].endswith("Pooling"):
            cfg = read(os.path.join(path, "config.json"))
            modes = cfg["pooling_mode"] if isinstance(cfg["pooling_mode"], list) else [cfg["pooling_mode"]]
            legacy = {"word_embedding_dimension": cfg["embedding_dimension"],
                      **{k: v in modes for k, v in mst.LEGACY_POOLING_KEYS.items()},
                      "include_prompt": cfg["include_prompt"]}
            write(os.path.join(path, "config.json"), legacy)
        if m["type"].endswith("Dense"):
            cfg = read(os.path.join(path, "config.json"))
            write(os.path.join(path, "config.json"), {k: cfg[k] for k in ("in_features", "out_features", "bias",
                                                                          "activation_function")})
    write(os.path.join(folder, "modules.json"), modules)
    tok = read(os.path.join(folder, "tokenizer_config.json"))
    write(os.path.join(folder, "sentence_bert_config.json"), {"max_seq_length": tok["model_max_length"],
                                                              "do_lower_case": False})
    tok["model_max_length"] = 512  # the legacy layout states the limit in sentence_bert_config.json only
    write(os.path.join(folder, "tokenizer_config.json"), tok)
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return with_tokenizer(make_checkpoint(tmp_path_factory.mktemp("st_base"), "bert", "model", **TINY))


@pytest.fixture(scope="module")
def all_modes(tmp_path_factory, base):
    """Every pooling mode at once (concatenated, in the order given), the 5.x layout, prompts included."""
    return save_st(tmp_path_factory.mktemp("all_modes"), base, tuple(mst.POOLING_MODES),
                   prompts={"query": "query: ", "document": "passage: "})


@pytest.fixture(scope="module")
def legacy(tmp_path_factory, base):
    """2.x-4.x layout: cls + mean + lasttoken without the prompt, Dense tanh then Dense identity, Normalize,
    a default prompt, max_seq_length 12 (shorter than most texts), dot similarity."""
    import torch

    folder = save_st(tmp_path_factory.mktemp("legacy"), base, ("cls", "mean", "lasttoken"), include_prompt=False,
                     dense=[(24, torch.nn.Tanh()), (16, torch.nn.Identity())], normalize=True, max_seq_length=12,
                     prompts={"query": "Represent this sentence for searching relevant passages: "},
                     default_prompt_name="query", similarity_fn_name="dot")
    return to_legacy(folder)


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    cache = {}

    def get(folder):
        if folder not in cache:
            cache[folder] = SentenceTransformer(folder, device="cpu")
        return cache[folder]
    return get


@pytest.fixture(scope="module")
def ours():
    cache = {}

    def get(folder):
        if folder not in cache:
            cache[folder] = minibert.SentenceTransformer(folder)
        return cache[folder]
    return get


def close(got, want, tol=TOL):
    want = np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.abs(got - want).max() <= tol, np.abs(got - want).max()


# -- SentenceTransformer.encode ---------------------------------------------------------------------------
def test_every_pooling_mode_with_and_without_prompt(all_modes, reference, ours):
    ref, model = reference(all_modes), ours(all_modes)
    assert read(os.path.join(all_modes, "modules.json"))[1]["type"].startswith("sentence_transformers.sentence_transformer")
    assert model.get_sentence_embedding_dimension() == ref.get_embedding_dimension() == 6 * 32
    want = ref.encode(TEXTS, batch_size=4)
    got = model.encode(TEXTS, batch_size=4)
    for k, mode in enumerate(mst.POOLING_MODES):  # each mode's own slice, so a wrong mode is named
        close(got[:, 32 * k:32 * (k + 1)], want[:, 32 * k:32 * (k + 1)])
    close(model.encode_query(TEXTS), ref.encode_query(TEXTS))  # "query: " pooled with the text
    close(model.encode(TEXTS, prompt_name="document"), ref.encode(TEXTS, prompt_name="document"))
    close(model.encode(TEXTS, prompt="search: ", normalize_embeddings=True),
          ref.encode(TEXTS, prompt="search: ", normalize_embeddings=True))
    one = model.encode(TEXTS[0])
    assert one.shape == (6 * 32,) and one.dtype == np.float32
    close(one, ref.encode(TEXTS[0]))


def test_legacy_layout_dense_normalize_prompt_excluded_and_short_max_length(legacy, reference, ours):
    ref, model = reference(legacy), ours(legacy)
    assert read(os.path.join(legacy, "1_Pooling", "config.json"))["pooling_mode_cls_token"] is True
    assert model.max_seq_length == ref.max_seq_length == 12
    assert model.default_prompt_name == "query" and model.similarity_fn_name == ref.similarity_fn_name == "dot"
    want, got = ref.encode(TEXTS), model.encode(TEXTS)  # the default prompt, left out of the pooling
    assert got.shape == (len(TEXTS), 16)
    close(got, want)
    close(model.encode(TEXTS, prompt=""), ref.encode(TEXTS, prompt=""))
    close(model.encode(TEXTS, truncate_dim=5, normalize_embeddings=True),
          ref.encode(TEXTS, truncate_dim=5, normalize_embeddings=True))  # truncated, then normalised
    close(model.similarity(got, got[:2]), ref.similarity(want, want[:2]).numpy())


def test_6x_layout_residual_dense(tmp_path, base, reference, ours):
    """6.x writes Normalize as sentence_transformers.base.modules.normalize.Normalize and may add a residual to
    Dense: y = act(x W^T + b) + x (in == out) or + x R^T. Expected: 5.x's pooled vectors through that in torch."""
    import torch
    from safetensors.torch import load_file, save_file

    folder = save_st(tmp_path / "st6", base, "weightedmean", dense=[(32, torch.nn.Tanh()), (8, torch.nn.GELU())],
                     normalize=True)
    pooled_only = save_st(tmp_path / "pooled", base, "weightedmean")
    modules = read(os.path.join(folder, "modules.json"))
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Dense", "3_Dense", "4_Normalize"]
    modules[4]["type"] = "sentence_transformers.base.modules.normalize.Normalize"
    write(os.path.join(folder, "modules.json"), modules)
    residual = torch.randn(8, 32) * 0.1
    weights = {}
    for sub, extra in (("2_Dense", {}), ("3_Dense", {"residual.weight": residual})):
        write(os.path.join(folder, sub, "config.json"), {**read(os.path.join(folder, sub, "config.json")),
                                                         "use_residual": True})
        weights[sub] = {**load_file(os.path.join(folder, sub, "model.safetensors")), **extra}
        save_file(weights[sub], os.path.join(folder, sub, "model.safetensors"))
    x = torch.from_numpy(reference(pooled_only).encode(TEXTS))
    d1, d2 = weights["2_Dense"], weights["3_Dense"]
    h = torch.tanh(x @ d1["linear.weight"].T + d1["linear.bias"]) + x  # in == out: the input itself
    y = torch.nn.functional.gelu(h @ d2["linear.weight"].T + d2["linear.bias"]) + h @ residual.T
    want = torch.nn.functional.normalize(y, p=2, dim=1).numpy()
    close(ours(folder).encode(TEXTS, batch_size=3), want)


def test_real_minilm_with_no_options(minilm, reference):
    """all-MiniLM-L6-v2 as shipped (2.x layout: mean pooling, Normalize, max_seq_length 256), not told how to
    pool: sentence-transformers' vectors (the pipeline's own test does the same with no options)."""
    texts = TEXTS + ["word " * 300]  # beyond 256 tokens
    close(minibert.SentenceTransformer(minilm).encode(texts, batch_size=3), reference(minilm).encode(texts))


@pytest.mark.slow
def test_real_minilm_embed_command_with_no_options(minilm, reference):
    """`minibert embed` in its own process, as a user runs it: JSON lines of sentence-transformers' vectors."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "minibert", "embed", "--model", minilm, *TEXTS[:3]], capture_output=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr.decode()
    got = np.array([json.loads(line)["embedding"] for line in p.stdout.decode().splitlines()], np.float32)
    close(got, reference(minilm).encode(TEXTS[:3]), 1e-6)  # JSON keeps 7 decimals


def test_pipeline_and_embed_follow_the_folder_and_say_when_overridden(legacy, reference, capsys, caplog, tmp_path):
    import minibert.cli

    pipe = minibert.pipeline("feature-extraction", model=legacy)
    want = reference(legacy).encode(TEXTS)
    close(pipe(TEXTS), want)
    close(pipe(TEXTS, prompt_name="query", truncate_dim=4), reference(legacy).encode(TEXTS, truncate_dim=4))
    with caplog.at_level("WARNING", logger="minibert"):
        plain = pipe(TEXTS, pooling="mean")  # the pipeline's own mean pooling, over the prompt too
    assert plain.shape == (len(TEXTS), 32)
    assert "pooling='mean' replaces the sentence-transformers modules" in caplog.text
    out = tmp_path / "e.npy"
    assert minibert.cli.main(["embed", "--model", legacy, "--prompt-name", "query", "--truncate-dim", "4",
                              "--normalize", "--output", str(out), *TEXTS[:3]]) == 0
    close(np.load(out), reference(legacy).encode(TEXTS[:3], truncate_dim=4, normalize_embeddings=True))
    assert minibert.cli.main(["embed", "--model", legacy, "--prompt", "", "--no-normalize", "--output", str(out),
                              *TEXTS[:3]]) == 0
    close(np.load(out), reference(legacy).encode(TEXTS[:3], prompt=""))


# -- CrossEncoder -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cross_encoders(tmp_path_factory):
    """A one-label cross-encoder as a plain transformers folder (as ms-marco's ship) and a three-label one saved by
    sentence-transformers' CrossEncoder (modules.json, config_sentence_transformers.json with its activation)."""
    from sentence_transformers import CrossEncoder

    one = with_tokenizer(make_checkpoint(tmp_path_factory.mktemp("ce1"), "bert", "sequence-classification",
                                         num_labels=1, seed=3, **TINY))
    three_base = with_tokenizer(make_checkpoint(tmp_path_factory.mktemp("ce3_base"), "bert",
                                                "sequence-classification", num_labels=3, seed=4, **TINY))
    three = str(tmp_path_factory.mktemp("ce3"))
    CrossEncoder(three_base, max_length=20, device="cpu").save(three)
    assert read(os.path.join(three, "config_sentence_transformers.json"))["activation_fn"].endswith("Identity")
    return {"one": one, "three": three}


@pytest.fixture(scope="module")
def ours_ce(cross_encoders):
    return {name: minibert.CrossEncoder(folder) for name, folder in cross_encoders.items()}


QUERY = "which film is a masterpiece?"
PAIRS = [(QUERY, t) for t in TEXTS] + [("a b c " * 20, "d e f " * 20)]  # the last beyond both limits


def test_cross_encoder_predict_and_rank(cross_encoders, ours_ce):
    from sentence_transformers import CrossEncoder

    for name, folder in reversed(cross_encoders.items()):  # the one-label model last: rank below uses it
        ref, ours = CrossEncoder(folder, device="cpu"), ours_ce[name]
        assert ours.max_length == ref.max_length and ours.num_labels == ref.num_labels
        want, got = ref.predict(PAIRS, batch_size=3), ours.predict(PAIRS, batch_size=3)
        close(got, want)
        if name == "three":
            close(ours.predict(PAIRS, apply_softmax=True), ref.predict(PAIRS, apply_softmax=True))
        close(np.asarray(ours.predict(PAIRS[0])), ref.predict(PAIRS[0]))
    assert ours.activation_fn == "Sigmoid"
    docs = [t for _, t in PAIRS]
    want, got = ref.rank(QUERY, docs, return_documents=True), ours.rank(QUERY, docs, return_documents=True)
    assert [r["corpus_id"] for r in got] == [r["corpus_id"] for r in want]
    assert [r["text"] for r in got] == [r["text"] for r in want]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(got, want)) <= TOL
    assert [r["corpus_id"] for r in ours.rank(QUERY, docs, top_k=2)] == [r["corpus_id"] for r in want[:2]]
    close(ours.predict(PAIRS, activation_fn="identity"), ref.predict(PAIRS, activation_fn=__import__("torch").nn.Identity()))
    with pytest.raises(ValueError, match="num_labels=1"):
        ours_ce["three"].rank(QUERY, docs)


def test_rerank_pipeline_and_command(cross_encoders, ours_ce, tmp_path, capsys):
    import minibert.cli

    folder = cross_encoders["one"]
    docs = [t for _, t in PAIRS[:-1] if t]
    ranked = ours_ce["one"].rank(QUERY, docs)
    scores = minibert.pipeline("rerank", model=folder)(docs, query=QUERY)
    close(np.array([s["score"] for s in scores]), ours_ce["one"].predict([(QUERY, d) for d in docs]))
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(docs) + "\n", encoding="utf-8")
    assert minibert.cli.main(["rerank", "--model", folder, "--query", QUERY, "--file", str(path), "--top-k", "3"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in records] == [docs[r["corpus_id"]] for r in ranked[:3]]
    assert max(abs(r["score"] - float(w["score"])) for r, w in zip(records, ranked)) <= TOL


# -- bad input: one line, before any model work -------------------------------------------------------------
def _copy(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def test_bad_folders_fail_before_the_model_loads(legacy, tmp_path, monkeypatch):
    from minibert import auto

    monkeypatch.setattr(auto.AutoModel, "from_pretrained", lambda *a, **k: pytest.fail("the model was loaded"))
    cases = []
    f = _copy(legacy, tmp_path / "mode")
    cfg = read(os.path.join(f, "1_Pooling", "config.json"))
    write(os.path.join(f, "1_Pooling", "config.json"), {"word_embedding_dimension": 32, "pooling_mode": "median"})
    cases.append((f, "1_Pooling/config.json: unknown pooling mode 'median'"))
    f = _copy(legacy, tmp_path / "dense")
    write(os.path.join(f, "2_Dense", "config.json"), {**read(os.path.join(f, "2_Dense", "config.json")), "in_features": 32})
    cases.append((f, "2_Dense/config.json: in_features=32 but the module before it gives vectors of 96"))
    f = _copy(legacy, tmp_path / "pickle")
    os.rename(os.path.join(f, "2_Dense", "model.safetensors"), os.path.join(f, "2_Dense", "pytorch_model.bin"))
    cases.append((f, "has its Dense weights only as pytorch_model.bin"))
    f = _copy(legacy, tmp_path / "unknown")
    modules = read(os.path.join(f, "modules.json"))
    modules[2]["type"] = "sentence_transformers.models.LSTM"
    write(os.path.join(f, "modules.json"), modules)
    cases.append((f, "has type 'sentence_transformers.models.LSTM', which minibert does not implement"))
    for folder, message in cases:
        for load in (minibert.SentenceTransformer, lambda m: minibert.pipeline("feature-extraction", model=m)):
            with pytest.raises(mst.SentenceFolderError) as e:
                load(folder)
            assert message in str(e.value).replace(os.sep, "/") and "\n" not in str(e.value), str(e.value)
    assert cfg["pooling_mode_cls_token"]


def test_bad_options_fail_before_any_forward(legacy, ours_ce, ours, monkeypatch):
    model = ours(legacy)
    ce = ours_ce["one"]
    for obj in (model._pipe, ce._pipe):
        monkeypatch.setattr(obj, "model", _NoForward(obj.model))
    for kwargs, message in [(dict(prompt_name="passage"), "prompt_name='passage' is not a prompt of"),
                            (dict(truncate_dim=17), "truncate_dim=17 is more than the 16 dimensions"),
                            (dict(truncate_dim=0), "truncate_dim=0; it must be at least 1"),
                            (dict(precision="int4"), "precision='int4'")]:
        with pytest.raises(ValueError, match=message):
            model.encode(TEXTS, **kwargs)
    with pytest.raises(ValueError, match="truncate_dim=99 is more than"):
        minibert.SentenceTransformer(legacy, truncate_dim=99)
    with pytest.raises(ValueError, match="query is empty"):
        ce.rank("  ", ["a"])
    with pytest.raises(ValueError, match="documents is empty"):
        ce.rank("q", [])


class _NoForward:
    def __init__(self, model):
        self.config = model.config

    def __call__(self, *a, **k):
        pytest.fail("the model ran")


def test_quantized_embeddings_match(all_modes, reference, ours):
    for precision in ("int8", "ubinary"):
        want = reference(all_modes).encode(TEXTS, precision=precision)
        got = ours(all_modes).encode(TEXTS, precision=precision)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.abs(got.astype(int) - want.astype(int)).max() <= (1 if precision == "int8" else 0)


def test_served_embeddings_follow_the_folder(legacy, reference):
    """`minibert serve`'s /embed makes its vectors through the folder's modules (here [CLS]+mean+last-token
    pooling without the prompt, two Dense layers, Normalize, max_seq_length 12), as sentence-transformers does."""
    from minibert.pipelines import pipeline
    from minibert.serve.model import Served

    served = Served(pipeline("feature-extraction", model=legacy), "feature-extraction", "legacy", legacy)
    ref = reference(legacy)
    assert served.dimension == 16 and served.max_input_length == 12 and served.pooling == "cls+mean+lasttoken"
    close(np.stack(served.embed(TEXTS, True, True, None)), ref.encode(TEXTS, normalize_embeddings=True))
    prompt = served.prompt("query")
    # normalize=False is TEI's: the folder's modules but its Normalize, so the vector is the one sentence-transformers
    # normalises, at its own length (sentence-transformers normalises, then cuts to truncate_dim)
    raw = np.stack(served.embed(TEXTS, False, True, 5, prompt))
    want = ref.encode(TEXTS, prompt_name="query", truncate_dim=5)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    close(unit(raw), unit(want))
    full = np.stack(served.embed(TEXTS, False, True, None, prompt))
    assert np.all(np.abs(np.linalg.norm(full, axis=1) - 1) > 1e-3), "normalize=False still gave unit vectors"
    close(raw, full[:, :5])
