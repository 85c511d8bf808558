"""The loader: name variants, reports, strict shapes, clear errors for bad folders, save round trip."""
import json
import logging
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import minibert
from minibert.checkpoint import CheckpointError, hub_variables
from minibert.config import ConfigError
from reference import make_checkpoint, reference

IDS = [[101, 5, 17, 42, 102], [101, 7, 102, 0, 0]]
MASK = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


def rewrite(src, dst, rename=None, extra=None, drop=()):
    """Copy a checkpoint folder, renaming/adding/dropping tensors."""
    shutil.copytree(src, dst)
    state = load_file(os.path.join(src, "model.safetensors"))
    state = {(rename(k) if rename else k): v for k, v in state.items() if k not in drop}
    state.update(extra or {})
    save_file(state, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    return str(dst)


def logits(folder, cls=minibert.AutoModelForSequenceClassification):
    return cls.from_pretrained(folder)(IDS, attention_mask=MASK)


def test_every_variable_has_a_unique_hub_name(tiny_bert_cls):
    model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny_bert_cls)
    names = hub_variables(model)
    assert len(names) == len(model.weights)
    assert set(names) == set(load_file(os.path.join(tiny_bert_cls, "model.safetensors")))


@pytest.mark.parametrize("variant", ["no_prefix", "gamma_beta", "position_ids"])
def test_checkpoint_name_variants(tmp_path, tiny_bert_base, variant, caplog):
    want = logits(tiny_bert_base, minibert.AutoModel).last_hidden_state.numpy()
    if variant == "no_prefix":  # base checkpoints saved with a `bert.` prefix (and the reverse)
        folder = rewrite(tiny_bert_base, tmp_path / "v", rename=lambda k: "bert." + k)
    elif variant == "gamma_beta":  # old Google BERT
        folder = rewrite(tiny_bert_base, tmp_path / "v",
                         rename=lambda k: k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"))
    else:
        folder = rewrite(tiny_bert_base, tmp_path / "v", extra={"embeddings.position_ids": np.arange(40)[None]})
    with caplog.at_level(logging.WARNING, logger="minibert"):
        model, info = minibert.AutoModel.from_pretrained(folder, output_loading_info=True)
    assert info.missing_keys == [] and info.unexpected_keys == []
    assert [r.getMessage() for r in caplog.records if r.name == "minibert"] == []
    got = model(IDS, attention_mask=MASK).last_hidden_state.numpy()
    np.testing.assert_array_equal(got, want)


def test_base_model_from_classifier_checkpoint_reports_unused(tiny_bert_cls, caplog):
    ref = reference(tiny_bert_cls, IDS, MASK)  # transformers' BertModel from the same folder
    with caplog.at_level(logging.WARNING, logger="minibert"):
        model, info = minibert.BertModel.from_pretrained(tiny_bert_cls, output_loading_info=True)
    assert info.unexpected_keys == ["classifier.bias", "classifier.weight"] and info.missing_keys == []
    assert "were not used when initializing BertModel" in caplog.text and "classifier.weight" in caplog.text
    out = model(IDS, attention_mask=MASK)
    assert np.abs(out.pooler_output.numpy() - ref["pooler_output"]).max() <= 1e-5


def test_classifier_from_base_checkpoint_reports_new_weights(tiny_bert_base, caplog):
    with caplog.at_level(logging.WARNING, logger="minibert"):
        model, info = minibert.TFAutoModelForSequenceClassification.from_pretrained(
            tiny_bert_base, num_labels=4, output_loading_info=True)
    assert info.missing_keys == ["classifier.weight", "classifier.bias"] and info.unexpected_keys == []
    assert "newly initialized" in caplog.text and "TRAIN" in caplog.text
    assert model(IDS).logits.shape == (2, 4)
    # loading leaves weights unwritten until the checkpoint fills them: the missing ones are drawn
    # as transformers draws them, normal(0, initializer_range), and the missing bias is zeros
    kernel, bias = model.classifier.kernel.numpy(), model.classifier.bias.numpy()
    assert np.isfinite(kernel).all() and abs(kernel.std() - model.config.initializer_range) < 0.01
    assert not bias.any()


def test_mlm_heads_are_reported_not_fatal(tmp_path, tiny_bert_base, caplog):
    folder = rewrite(tiny_bert_base, tmp_path / "v", extra={"cls.predictions.bias": np.zeros(120, np.float32)})
    with caplog.at_level(logging.WARNING, logger="minibert"):
        _, info = minibert.AutoModel.from_pretrained(folder, output_loading_info=True)
    assert info.unexpected_keys == ["cls.predictions.bias"]
    assert "cls.predictions.bias" in caplog.text


def test_shape_mismatch_names_tensor_and_shapes(tmp_path, tiny_bert_base):
    bad = np.zeros((32, 31), np.float32)
    folder = rewrite(tiny_bert_base, tmp_path / "v", extra={"pooler.dense.weight": bad})
    with pytest.raises(CheckpointError, match=r"pooler\.dense\.weight.*\(32, 31\).*\(32, 32\)"):
        minibert.AutoModel.from_pretrained(folder)


def test_sharded_checkpoint(tmp_path, tiny_bert_cls):
    import transformers as tr

    tr.AutoModelForSequenceClassification.from_pretrained(tiny_bert_cls).save_pretrained(tmp_path, max_shard_size="20KB")
    assert os.path.exists(tmp_path / "model.safetensors.index.json") and not os.path.exists(tmp_path / "model.safetensors")
    np.testing.assert_array_equal(logits(tmp_path).logits.numpy(), logits(tiny_bert_cls).logits.numpy())


def test_save_and_reload_round_trip(tmp_path, tiny_distilbert_cls):
    model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny_distilbert_cls)
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["architectures"] == ["DistilBertForSequenceClassification"] and cfg["model_type"] == "distilbert"
    again = minibert.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    np.testing.assert_array_equal(again(IDS).logits.numpy(), model(IDS).logits.numpy())


class TestBadFolders:
    def test_missing_folder(self, tmp_path):
        with pytest.raises(CheckpointError, match="no such folder"):
            minibert.AutoModel.from_pretrained(str(tmp_path / "nope" / "deeper"))

    def test_no_config(self, tmp_path):
        (tmp_path / "model.safetensors").write_bytes(b"")
        with pytest.raises(ConfigError, match=r"no config.json in .* \(it contains: model.safetensors\)"):
            minibert.AutoModel.from_pretrained(str(tmp_path))

    def test_malformed_config(self, tmp_path, tiny_bert_base):
        folder = shutil.copytree(tiny_bert_base, tmp_path / "v")
        (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 32,')
        with pytest.raises(ConfigError, match="config.json is not valid JSON"):
            minibert.AutoModel.from_pretrained(str(folder))

    def test_unknown_model_type(self, tmp_path, tiny_bert_base):
        folder = shutil.copytree(tiny_bert_base, tmp_path / "v")
        (folder / "config.json").write_text('{"model_type": "gpt2"}')
        with pytest.raises(ConfigError, match="unknown model_type 'gpt2'.*supported: bert, (.*, )?distilbert"):
            minibert.AutoModel.from_pretrained(str(folder))

    def test_only_pytorch_bin(self, tmp_path, tiny_bert_base):
        folder = shutil.copytree(tiny_bert_base, tmp_path / "v")
        os.remove(folder / "model.safetensors")
        (folder / "pytorch_model.bin").write_bytes(b"x")
        with pytest.raises(CheckpointError, match=r"no model.safetensors.*pytorch_model.bin.*save_pretrained"):
            minibert.AutoModel.from_pretrained(str(folder))

    @pytest.mark.parametrize("cut", [4, 100, -100])
    def test_truncated_safetensors_names_file(self, tmp_path, tiny_bert_base, cut):
        folder = shutil.copytree(tiny_bert_base, tmp_path / "v")
        path = folder / "model.safetensors"
        data = path.read_bytes()
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"cannot read .*model.safetensors"):
            minibert.AutoModel.from_pretrained(str(folder))

    def test_hub_id_offline_gives_one_clear_sentence(self, monkeypatch):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(CheckpointError, match="pass a local folder") as e:
            minibert.AutoModel.from_pretrained("someone/not-in-the-cache")
        assert e.value.__cause__ is None


def test_hub_cache_is_used(tmp_path, tiny_bert_base, monkeypatch):
    """A repo id resolves through huggingface_hub's cache layout, offline, with HF_HUB_OFFLINE=1."""
    snap = tmp_path / "models--acme--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_bert_base, snap)
    (tmp_path / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "models--acme--tiny" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = minibert.AutoModel.from_pretrained("acme/tiny", cache_dir=str(tmp_path))
    want = minibert.AutoModel.from_pretrained(tiny_bert_base)(IDS).last_hidden_state.numpy()
    np.testing.assert_array_equal(model(IDS).last_hidden_state.numpy(), want)


# -- files that try to hurt: each error names the file and the problem -----------------------------
def shard(src, dst, extra_in_second=()):
    """Split a checkpoint into two shards with an index; keys in `extra_in_second` go into both."""
    shutil.copytree(src, dst)
    state = load_file(os.path.join(src, "model.safetensors"))
    os.remove(os.path.join(dst, "model.safetensors"))
    keys = sorted(state)
    first, second = keys[: len(keys) // 2], keys[len(keys) // 2:] + list(extra_in_second)
    save_file({k: state[k] for k in first}, os.path.join(dst, "model-00001-of-00002.safetensors"))
    save_file({k: state[k] for k in second}, os.path.join(dst, "model-00002-of-00002.safetensors"))
    weight_map = {k: "model-00001-of-00002.safetensors" for k in first}
    weight_map.update({k: "model-00002-of-00002.safetensors" for k in second if k not in weight_map})
    write_index(dst, {"metadata": {}, "weight_map": weight_map})
    return str(dst)


def write_index(folder, data):
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump(data, f)


def test_two_shards_well_formed_load(tmp_path, tiny_bert_base):
    """The shard helper below makes loadable checkpoints, so the refusals that follow are about their flaw."""
    folder = shard(tiny_bert_base, tmp_path / "v")
    want = logits(tiny_bert_base, minibert.AutoModel).last_hidden_state.numpy()
    np.testing.assert_array_equal(logits(folder, minibert.AutoModel).last_hidden_state.numpy(), want)


def test_same_tensor_in_two_shards_is_refused(tmp_path, tiny_bert_base):
    folder = shard(tiny_bert_base, tmp_path / "v", extra_in_second=["embeddings.word_embeddings.weight"])
    with pytest.raises(CheckpointError, match=r"embeddings\.word_embeddings\.weight is stored twice, "
                                              r"in .*model-00001-of-00002.* and in .*model-00002-of-00002"):
        minibert.AutoModel.from_pretrained(folder)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_integer_or_boolean_weights_are_refused(tmp_path, tiny_bert_base, dtype):
    bias = load_file(os.path.join(tiny_bert_base, "model.safetensors"))["pooler.dense.bias"]
    folder = rewrite(tiny_bert_base, tmp_path / "v", extra={"pooler.dense.bias": (bias * 100).astype(dtype)})
    with pytest.raises(CheckpointError, match=rf"pooler\.dense\.bias in .*model.safetensors is {np.dtype(dtype)}, "
                                              "not floating point"):
        minibert.AutoModel.from_pretrained(folder)


@pytest.mark.parametrize("weight_map, problem", [
    (["model-00001-of-00002.safetensors"], r"weight_map must be a JSON object .* not list"),
    ({"pooler.dense.bias": 3}, r"weight_map\['pooler.dense.bias'\] is 3, not the file name of a shard"),
    ({"pooler.dense.bias": None}, r"weight_map\['pooler.dense.bias'\] is None"),
    ({"pooler.dense.bias": "../model.safetensors"}, r"weight_map\['pooler.dense.bias'\] is '../model.safetensors', not the file name"),
])
def test_malformed_index_names_the_file_and_the_problem(tmp_path, tiny_bert_base, weight_map, problem):
    folder = shard(tiny_bert_base, tmp_path / "v")
    write_index(folder, {"weight_map": weight_map})
    with pytest.raises(CheckpointError, match=r"model\.safetensors\.index\.json: " + problem):
        minibert.AutoModel.from_pretrained(folder)


def test_index_that_is_not_an_object(tmp_path, tiny_bert_base):
    folder = shard(tiny_bert_base, tmp_path / "v")
    write_index(folder, [1, 2])
    with pytest.raises(CheckpointError, match=r"index\.json must hold a JSON object with a weight_map, not list"):
        minibert.AutoModel.from_pretrained(folder)
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        f.write("[" * 100_000 + "]" * 100_000)  # valid JSON deeper than Python's parser goes
    with pytest.raises(CheckpointError, match=r"index\.json is nested too deeply to be a shard index$"):
        minibert.AutoModel.from_pretrained(folder)


def test_missing_shard_names_it(tmp_path, tiny_bert_base):
    folder = shard(tiny_bert_base, tmp_path / "v")
    os.remove(os.path.join(folder, "model-00002-of-00002.safetensors"))
    with pytest.raises(CheckpointError, match=r"model-00002-of-00002\.safetensors \(listed in model\.safetensors"
                                              r"\.index\.json\) does not exist"):
        minibert.AutoModel.from_pretrained(folder)


@pytest.mark.parametrize("kind, problem", [
    ("self_link", "is a symbolic link that loops"),
    ("broken_link", "is a broken symbolic link: its target gone.safetensors does not exist"),
    ("directory", "is a directory, not a file"),
])
def test_weights_path_that_is_no_file(tmp_path, tiny_bert_base, kind, problem):
    folder = shutil.copytree(tiny_bert_base, tmp_path / "v")
    path = folder / "model.safetensors"
    os.remove(path)
    if kind == "self_link":
        os.symlink("model.safetensors", path)
    elif kind == "broken_link":
        os.symlink("gone.safetensors", path)
    else:
        path.mkdir()
    with pytest.raises(CheckpointError, match=r"v/model\.safetensors " + problem):
        minibert.AutoModel.from_pretrained(str(folder))


def test_weights_without_read_permission(tmp_path, tiny_bert_base, monkeypatch):
    """The OS's refusal, as a non-root user meets it after chmod 000 (root reads anything, so it is simulated)."""
    import errno

    folder = shutil.copytree(tiny_bert_base, tmp_path / "v")
    target, real_open = str(folder / "model.safetensors"), os.open

    def refusing_open(path, flags, *args, **kwargs):
        if os.fspath(path) == target:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(CheckpointError, match=r"v/model\.safetensors cannot be read: permission denied"):
        minibert.AutoModel.from_pretrained(str(folder))


def test_weight_stored_with_and_without_prefix_warns_and_uses_the_models_name(tmp_path, tiny_bert_cls, caplog):
    """The same tensor under `bert.x` and `x`: the model's own name wins, the other is named in a warning."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    import minibert

    state = load_file(os.path.join(tiny_bert_cls, "model.safetensors"))
    key = "bert.embeddings.word_embeddings.weight"
    state[key.removeprefix("bert.")] = np.zeros_like(state[key])  # a stray unprefixed copy
    shutil.copytree(tiny_bert_cls, tmp_path / "ck")
    save_file(state, str(tmp_path / "ck" / "model.safetensors"), metadata={"format": "pt"})
    with caplog.at_level("WARNING", logger="minibert"):
        model = minibert.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ck")
    assert f"ignoring {key.removeprefix('bert.')}" in caplog.text
    want = load_file(os.path.join(tiny_bert_cls, "model.safetensors"))[key]
    np.testing.assert_array_equal(model.bert.embeddings.word_embeddings.embeddings.numpy(), want)


def with_declared_tensor(src, dst, name, shape):
    """Copy a checkpoint folder, adding to its safetensors header a float32 tensor `name` of `shape` whose data
    is a sparse hole: the file is as long as the header says, and the hole takes no disk."""
    import struct

    shutil.copytree(src, dst)
    path = os.path.join(dst, "model.safetensors")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header, data = json.loads(f.read(n)), f.read()
    size = 4 * int(np.prod(shape))
    header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [len(data), len(data) + size]}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data)
        f.truncate(8 + len(raw) + len(data) + size)
    return str(dst), path


TERABYTE = (1 << 18, 1 << 20)  # float32: 2**40 bytes, more than any machine here can allocate


def test_unused_huge_tensor_is_never_read(tmp_path, tiny_bert_base):
    """A terabyte tensor the model does not use: its name, dtype and shape come from the header, its data is
    never read (reading it would allocate a terabyte), and loading stays small."""
    import tracemalloc

    from minibert import checkpoint

    folder, _ = with_declared_tensor(tiny_bert_base, tmp_path / "v", "cls.predictions.unused", TERABYTE)
    model, info = minibert.AutoModel.from_pretrained(folder, output_loading_info=True)
    assert info.unexpected_keys == ["cls.predictions.unused"]
    want = logits(tiny_bert_base, minibert.AutoModel).last_hidden_state.numpy()
    np.testing.assert_array_equal(model(IDS, attention_mask=MASK).last_hidden_state.numpy(), want)
    tracemalloc.start()  # reading and assigning again, the model already built
    try:
        checkpoint.load_weights(model, checkpoint.read_state_dict(folder))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"loading allocated {peak >> 20} MiB"


def test_used_tensor_with_a_huge_declared_shape_is_refused_from_the_header(tmp_path, tiny_bert_base):
    folder, _ = with_declared_tensor(rewrite(tiny_bert_base, tmp_path / "w", drop=["pooler.dense.weight"]),
                                     tmp_path / "x", "pooler.dense.weight", TERABYTE)
    with pytest.raises(CheckpointError, match=r"shape mismatch for pooler\.dense\.weight .* checkpoint has "
                                              r"\(262144, 1048576\), model expects \(32, 32\)"):
        minibert.AutoModel.from_pretrained(folder)


def test_safetensors_allocation_failure_is_one_line_naming_file_and_tensor(tmp_path, tiny_bert_base):
    """safetensors panics (pyo3's PanicException, a BaseException) when it cannot allocate a tensor: read in a
    process whose address space is capped, so the allocation fails whatever the machine's overcommit policy."""
    import subprocess
    import sys

    _, path = with_declared_tensor(tiny_bert_base, tmp_path / "v", "huge", TERABYTE)
    script = (
        "import resource, sys\n"
        "from minibert.checkpoint import read_state_dict, CheckpointError\n"
        "state = read_state_dict(sys.argv[1])\n"
        "vm = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0]) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.getrlimit(resource.RLIMIT_AS)[1]))\n"
        "try:\n    state['huge']\nexcept CheckpointError as e:\n    print(e)\n"
    )
    env = {**os.environ, "RUST_BACKTRACE": "0", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script, os.path.dirname(path)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == [f"cannot read tensor huge from {path}: safetensors failed "
                                                "(PyObject pointer is null; out of memory?)"]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_checkpoint_loads_as_transformers_does(tmp_path, dtype, caplog):
    """A checkpoint saved in bfloat16 or float16 (as many Hub models are) loads, converted exactly to float32:
    the same logits as transformers from the same weights converted to float32, and not a word said."""
    import warnings

    import torch
    import transformers as tr

    from reference import TINY_BERT

    folder = make_checkpoint(tmp_path / "f32", "bert", "sequence-classification", num_labels=3, **TINY_BERT)
    half = tr.BertForSequenceClassification.from_pretrained(folder, dtype=getattr(torch, dtype))
    half.save_pretrained(tmp_path / "half")
    from safetensors import safe_open

    with safe_open(tmp_path / "half" / "model.safetensors", framework="np") as f:  # really stored in half precision
        assert f.get_slice("bert.pooler.dense.weight").get_dtype() == {"bfloat16": "BF16", "float16": "F16"}[dtype]
    ref = tr.BertForSequenceClassification.from_pretrained(tmp_path / "half", dtype=torch.float32,
                                                           attn_implementation="eager").eval()
    with torch.no_grad():
        want = ref(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK)).logits.numpy()
    with caplog.at_level(logging.WARNING, logger="minibert"), warnings.catch_warnings():
        warnings.simplefilter("error")
        got = logits(str(tmp_path / "half")).logits.numpy()
    assert [r.getMessage() for r in caplog.records if r.name == "minibert"] == []
    assert np.abs(got - want).max() <= 1e-5


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weight_is_refused_naming_the_tensor(tmp_path, tiny_bert_base, bad):
    state = load_file(os.path.join(tiny_bert_base, "model.safetensors"))
    bias = state["encoder.layer.1.output.dense.bias"].copy()
    bias[3] = bad
    folder = rewrite(tiny_bert_base, tmp_path / "v", extra={"encoder.layer.1.output.dense.bias": bias})
    nan, inf = (1, 0) if np.isnan(bad) else (0, 1)
    with pytest.raises(CheckpointError, match=rf"^tensor encoder\.layer\.1\.output\.dense\.bias in .*v holds {nan} NaN "
                                              rf"and {inf} infinite values"):
        minibert.AutoModel.from_pretrained(folder)


def test_float64_checkpoint_loads_rounded_with_one_warning(tmp_path, tiny_bert_base, caplog):
    state = load_file(os.path.join(tiny_bert_base, "model.safetensors"))
    folder = rewrite(tiny_bert_base, tmp_path / "v", extra={k: v.astype(np.float64) for k, v in state.items()})
    with caplog.at_level(logging.WARNING, logger="minibert"):
        got = logits(folder, minibert.AutoModel).last_hidden_state.numpy()
    assert [r.getMessage() for r in caplog.records if r.name == "minibert"] == [
        f"{folder} stores float64 weights: they are rounded to the model's float32"]
    np.testing.assert_array_equal(got, logits(tiny_bert_base, minibert.AutoModel).last_hidden_state.numpy())
