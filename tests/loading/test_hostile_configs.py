"""Checkpoint folders with wrong-typed or absurd values: each is refused at load with one line naming the
file and the key, before the model is built or run, never an internal error or NaN outputs."""
import json
import math
import os
import shutil
import time

import pytest

import minibert
from minibert import sentence_transformers as mst
from minibert.config import ConfigError
from reference import make_checkpoint

BERT = dict(model_type="bert", hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2,
            vocab_size=30522, max_position_embeddings=64)
TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}


def write(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f)


def embedder(folder, **files):
    """The JSON files of a sentence-transformers embedding folder (all read_folder reads); `files` replace some."""
    base = {"config.json": BERT, "modules.json": [TRANSFORMER, POOLING],
            "sentence_bert_config.json": {"max_seq_length": 48, "do_lower_case": False},
            "config_sentence_transformers.json": {"prompts": {"query": "q: "}, "default_prompt_name": None},
            "tokenizer_config.json": {"model_max_length": 512},
            "1_Pooling/config.json": {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}}
    for name, value in {**base, **files}.items():
        if value is not None:
            write(os.path.join(folder, name), value)
    return str(folder)


def cross_encoder(folder, **files):
    """A plain transformers cross-encoder folder (no modules.json), as older ones ship."""
    base = {"config.json": {**BERT, "num_labels": 1}, "tokenizer_config.json": {"model_max_length": 512}}
    for name, value in {**base, **files}.items():
        if value is not None:
            write(os.path.join(folder, name), value)
    return str(folder)


def refused(load, folder, file, *words):
    """load(folder) raises SentenceFolderError: one line, naming `file` (relative to folder) and each word."""
    with pytest.raises(mst.SentenceFolderError) as e:
        load(folder)
    message = str(e.value)
    assert "\n" not in message, message
    assert os.path.join(folder, file) in message, message
    for word in words:
        assert word in message, message
    return message


@pytest.fixture
def no_model(monkeypatch):
    """Loading the model or tokenizer fails the test: every refusal must come first."""
    monkeypatch.setattr(mst, "_load", lambda *a, **k: pytest.fail("the model was loaded"))


def test_the_base_folders_read(tmp_path):
    folder = mst.read_folder(embedder(tmp_path / "st"))
    assert folder.pooling.modes == ("mean",) and folder.max_seq_length == 48
    assert mst.read_folder(cross_encoder(tmp_path / "ce")).pooling is None


# -- sentence-transformers folders: wrong types ------------------------------------------------------
EMBEDDER_CASES = [  # (id, files replaced, the file named, the words the line must hold)
    ("activation-int", {"config_sentence_transformers.json": {"activation_fn": 5}},
     "config_sentence_transformers.json", ["activation_fn", "5"]),
    ("activation-list", {"config_sentence_transformers.json": {"activation_fn": ["torch.nn.Sigmoid"]}},
     "config_sentence_transformers.json", ["activation_fn"]),
    ("default-prompt-list", {"config_sentence_transformers.json": {"prompts": {"q": "q: "},
                                                                   "default_prompt_name": ["q"]}},
     "config_sentence_transformers.json", ["default_prompt_name", "['q']"]),
    ("processor-kwargs-str", {"sentence_bert_config.json": {"processor_kwargs": "x"}},
     "sentence_bert_config.json", ["processor_kwargs", "'x'"]),
    ("tokenizer-args-list", {"sentence_bert_config.json": {"tokenizer_args": [1]}},
     "sentence_bert_config.json", ["tokenizer_args"]),
    ("processor-max-length-str", {"sentence_bert_config.json": {"processor_kwargs": {"model_max_length": "128"}}},
     "sentence_bert_config.json", ["model_max_length", "'128'"]),
    ("max-seq-length-str", {"sentence_bert_config.json": {"max_seq_length": "128"}},
     "sentence_bert_config.json", ["max_seq_length", "'128'"]),
    ("model-max-length-str", {"sentence_bert_config.json": {}, "tokenizer_config.json": {"model_max_length": "128"}},
     "tokenizer_config.json", ["model_max_length", "'128'"]),
    ("model-max-length-str-no-positions", {"sentence_bert_config.json": {}, "config.json":
                                           {k: v for k, v in BERT.items() if k != "max_position_embeddings"},
                                           "tokenizer_config.json": {"model_max_length": "128"}},
     "tokenizer_config.json", ["model_max_length", "'128'"]),
    ("model-max-length-zero", {"sentence_bert_config.json": {}, "tokenizer_config.json": {"model_max_length": -3}},
     "tokenizer_config.json", ["model_max_length", "-3"]),
    ("do-lower-case-str", {"sentence_bert_config.json": {"max_seq_length": 48, "do_lower_case": "false"}},
     "sentence_bert_config.json", ["do_lower_case", "'false'"]),
    ("path-int", {"modules.json": [TRANSFORMER, {**POOLING, "path": 5}]}, "modules.json", ["path", "5"]),
    ("transformer-path-int", {"modules.json": [{**TRANSFORMER, "path": 5}, POOLING]}, "modules.json", ["path", "5"]),
    ("idx-str", {"modules.json": [TRANSFORMER, {**POOLING, "idx": "1"}]}, "modules.json", ["idx", "'1'"]),
    ("idx-bool", {"modules.json": [TRANSFORMER, {**POOLING, "idx": True}]}, "modules.json", ["idx", "True"]),
    ("pooling-mode-empty", {"1_Pooling/config.json": {"pooling_mode": []}},
     os.path.join("1_Pooling", "config.json"), ["pooling_mode", "[]"]),
    ("pooling-mode-int", {"1_Pooling/config.json": {"pooling_mode": 5}},
     os.path.join("1_Pooling", "config.json"), ["pooling_mode", "5"]),
    ("pooling-mode-nested", {"1_Pooling/config.json": {"pooling_mode": [["cls"]]}},
     os.path.join("1_Pooling", "config.json"), ["pooling mode", "['cls']"]),
    ("include-prompt-str", {"1_Pooling/config.json": {"pooling_mode": "cls", "include_prompt": "no"}},
     os.path.join("1_Pooling", "config.json"), ["include_prompt", "'no'"]),
]


@pytest.mark.parametrize("files, file, words", [c[1:] for c in EMBEDDER_CASES], ids=[c[0] for c in EMBEDDER_CASES])
def test_sentence_folder_wrong_types_are_one_line(tmp_path, no_model, files, file, words):
    folder = embedder(tmp_path / "st", **files)
    refused(mst.read_folder, folder, file, *words)
    refused(minibert.SentenceTransformer, folder, file, *words)


CROSS_CASES = [
    ("st-activation-int", {"config_sentence_transformers.json": {"activation_fn": 5}},
     "config_sentence_transformers.json", ["activation_fn", "5"]),
    ("config-activation-int", {"config.json": {**BERT, "num_labels": 1, "sentence_transformers": {"activation_fn": 5}}},
     "config.json", ["sentence_transformers", "activation_fn", "5"]),
    ("config-activation-list", {"config.json": {**BERT, "num_labels": 1,
                                                "sentence_transformers": {"activation_fn": ["torch.nn.Tanh"]}}},
     "config.json", ["activation_fn"]),
    ("config-sentence-transformers-str", {"config.json": {**BERT, "num_labels": 1, "sentence_transformers": "x"}},
     "config.json", ["sentence_transformers", "'x'"]),
    ("config-legacy-activation-int", {"config.json": {**BERT, "num_labels": 1,
                                                      "sbert_ce_default_activation_function": 7}},
     "config.json", ["sbert_ce_default_activation_function", "7"]),
]


@pytest.mark.parametrize("files, file, words", [c[1:] for c in CROSS_CASES], ids=[c[0] for c in CROSS_CASES])
def test_cross_encoder_wrong_types_are_one_line(tmp_path, no_model, files, file, words):
    folder = cross_encoder(tmp_path / "ce", **files)
    refused(mst.read_folder, folder, file, *words)
    refused(minibert.CrossEncoder, folder, file, *words)


def test_a_stated_activation_still_reads(tmp_path):
    folder = cross_encoder(tmp_path / "ce", **{"config.json": {
        **BERT, "num_labels": 1, "sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Tanh"}}})
    assert mst.read_folder(folder).activation_fn == "Tanh"


def test_modules_json_is_bounded(tmp_path, no_model):
    dropout = {"idx": 2, "name": "2", "path": "2_Dropout", "type": "sentence_transformers.models.Dropout"}
    chain = [TRANSFORMER, POOLING] + [{**dropout, "idx": i} for i in range(2, mst.MAX_MODULES)]
    assert len(mst.read_folder(embedder(tmp_path / "ok", **{"modules.json": chain})).steps) == 0
    folder = embedder(tmp_path / "65", **{"modules.json": chain + [{**dropout, "idx": mst.MAX_MODULES}]})
    refused(mst.read_folder, folder, "modules.json", f"{mst.MAX_MODULES + 1} modules", f"at most {mst.MAX_MODULES}")
    folder = embedder(tmp_path / "huge", **{"modules.json": chain + [{**dropout, "idx": i} for i in range(10**5)]})
    start = time.perf_counter()
    refused(minibert.SentenceTransformer, folder, "modules.json", f"at most {mst.MAX_MODULES}")
    assert time.perf_counter() - start < 5


# -- ModernBERT -----------------------------------------------------------------------------------
MODERNBERT = dict(vocab_size=120, hidden_size=32, num_attention_heads=4, intermediate_size=24, num_hidden_layers=3,
                  global_attn_every_n_layers=3, local_attention=8, max_position_embeddings=64, pad_token_id=0,
                  bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)


@pytest.fixture(scope="module")
def modernbert_folder(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("modernbert"), "modernbert", "model", **MODERNBERT)


def with_config(src, dst, **overrides):
    shutil.copytree(src, dst)
    path = os.path.join(dst, "config.json")
    with open(path) as f:
        config = json.load(f)
    write(path, {**config, **overrides})
    return str(dst)


MODERNBERT_CASES = [
    ("local-attention-huge", dict(local_attention=2**30), "local_attention", "1073741824"),
    ("local-attention-odd", dict(local_attention=7), "local_attention", "7"),
    ("local-attention-past-positions", dict(local_attention=130), "local_attention", "130"),
    ("local-attention-str", dict(local_attention="8"), "local_attention", "'8'"),
    ("global-theta-zero", dict(global_rope_theta=0), "global_rope_theta", "0"),
    ("global-theta-negative", dict(global_rope_theta=-10000.0), "global_rope_theta", "-10000.0"),
    ("global-theta-nan", dict(global_rope_theta=math.nan), "global_rope_theta", "nan"),
    ("global-theta-inf", dict(global_rope_theta=math.inf), "global_rope_theta", "inf"),
    ("global-theta-str", dict(global_rope_theta="160000"), "global_rope_theta", "'160000'"),
    ("global-theta-bool", dict(global_rope_theta=True), "global_rope_theta", "True"),
    ("local-theta-zero", dict(local_rope_theta=0.0), "local_rope_theta", "0.0"),
    ("local-theta-negative", dict(local_rope_theta=-1), "local_rope_theta", "-1"),
    ("local-theta-nan", dict(local_rope_theta=math.nan), "local_rope_theta", "nan"),
    ("local-theta-str", dict(local_rope_theta="10000"), "local_rope_theta", "'10000'"),
]


@pytest.mark.parametrize("overrides, key, value", [c[1:] for c in MODERNBERT_CASES],
                         ids=[c[0] for c in MODERNBERT_CASES])
def test_modernbert_bad_values_refused_at_load(modernbert_folder, tmp_path, monkeypatch, overrides, key, value):
    from minibert.models import modernbert

    folder = with_config(modernbert_folder, tmp_path / "m", **overrides)
    monkeypatch.setattr(modernbert.ModernBertAttention, "__init__", lambda *a, **k: pytest.fail("the model was built"))
    for load in (minibert.AutoConfig.from_pretrained, minibert.AutoModel.from_pretrained):
        with pytest.raises(ConfigError) as e:
            load(folder)
        message = str(e.value)
        assert "\n" not in message and os.path.join(folder, "config.json") in message, message
        assert f"{key}={value}" in message or f"{key} must" in message and value in message, message


def test_modernbert_edge_values_still_load(modernbert_folder, tmp_path):
    # local_attention up to twice the positions (every layer then sees every token), no local theta: the global's
    folder = with_config(modernbert_folder, tmp_path / "m", local_attention=128, local_rope_theta=None,
                         global_rope_theta=10)
    config = minibert.AutoConfig.from_pretrained(folder)
    assert config.local_attention == 128 and config.local_rope_theta is None


def test_modernbert_widest_window_runs_whole_and_equals_transformers(tmp_path, monkeypatch):
    """local_attention = 2 x max_position_embeddings, the widest allowed: no input is long enough to band, so the
    banded blocks (which grow with the window: minutes to trace at 4096) are never built, and the scores are
    transformers'."""
    import numpy as np

    from minibert.models import modernbert
    from reference import TOL, reference

    folder = make_checkpoint(tmp_path, "modernbert", "model", seed=3, **{**MODERNBERT, "local_attention": 128})
    ids = np.random.default_rng(0).integers(3, 120, size=(2, 60))
    mask = np.ones_like(ids)
    mask[1, 30:] = 0
    monkeypatch.setattr(modernbert, "banded_attention", lambda *a, **k: pytest.fail("banded past the input"))
    got = minibert.AutoModel.from_pretrained(folder)(ids, attention_mask=mask).last_hidden_state
    want = reference(folder, ids, mask)["last_hidden_state"]
    real = mask.astype(bool)
    assert np.abs(np.asarray(got)[real] - want[real]).max() <= TOL["last_hidden_state"]


# -- the weight limit names the fields -------------------------------------------------------------
def test_weight_limit_names_the_fields(tmp_path):
    write(os.path.join(tmp_path, "config.json"), {**BERT, "num_hidden_layers": 1000000})
    with pytest.raises(ConfigError) as e:
        minibert.AutoConfig.from_pretrained(tmp_path)
    message = str(e.value)
    assert "\n" not in message and os.path.join(tmp_path, "config.json") in message, message
    assert "num_hidden_layers=1000000" in message and "hidden_size=32" in message, message
    assert "parameters, " in message and "GiB in float32" in message and "MINIBERT_MAX_WEIGHT_BYTES" in message
    # the field that makes it so comes first, even when it is not the number of layers
    write(os.path.join(tmp_path, "config.json"), {**BERT, "num_labels": 10**9})
    with pytest.raises(ConfigError, match=r"GiB in float32.*\(num_labels=1000000000[,;)]"):
        minibert.AutoConfig.from_pretrained(tmp_path)
