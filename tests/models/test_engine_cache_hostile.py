"""The LiteRT cache runs only what this user converted for this model: an entry holding another model's files, an
index naming a folder outside the cache, a symlinked entry, or a cache another user could write is refused; a
sharded checkpoint's index is validated (as the Keras loader does) before any file it names is opened or hashed."""
import json
import os
import re
import shutil
import stat
import tempfile
from types import SimpleNamespace

import numpy as np
import pytest

import minibert
from minibert import checkpoint, default_model, engine, runtime
from reference import TINY_BERT, make_checkpoint

pytest.importorskip("ai_edge_litert", reason="ai-edge-litert publishes no wheel for this platform")

CLASS = "AutoModelForSequenceClassification"
IDS = np.array([[101, 5, 17, 42, 102], [101, 7, 102, 0, 0]], np.int32)
MASK = (IDS != 0).astype(np.int32)


def logits(model):
    return np.asarray(model(IDS, MASK).logits)


def load(folder):
    return minibert.AutoModelForSequenceClassification.from_pretrained(folder, engine="litert")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two tiny classifiers (different weights), each converted once and recorded in the runtime index."""
    base = tmp_path_factory.mktemp("hostile")
    cache = base / "cache"
    models = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINIBERT_CACHE", str(cache))
        mp.setattr(engine, "_warned", set())
        for name, seed in (("a", 0), ("b", 1)):
            folder = make_checkpoint(base / name, "bert", "sequence-classification", seed=seed, num_labels=3, **TINY_BERT)
            model = load(folder)
            want = logits(minibert.AutoModelForSequenceClassification.from_pretrained(folder, engine="keras"))
            assert np.abs(logits(model) - want).max() <= 1e-5
            runtime.remember(folder, CLASS, {"engine": "litert"}, model)
            key = os.path.basename(model.compiled_forward().folder)
            models[name] = SimpleNamespace(folder=folder, key=key, want=want,
                                           source=runtime.source_key(folder, CLASS, "float32"))
    assert np.abs(models["a"].want - models["b"].want).max() > 1e-3  # else a swap would go unseen
    return SimpleNamespace(cache=cache, **models)


@pytest.fixture
def root(built, tmp_path, monkeypatch):
    """A copy of the built cache for this test (its litert folder), and a temp folder of the test's own."""
    shutil.copytree(built.cache, tmp_path / "cache", symlinks=True)
    monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(engine, "_warned", set())
    (tmp_path / "tmp").mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path / "cache" / "litert"


def on_runtime(folder, monkeypatch):
    """`runtime.load` as a process without TensorFlow runs it."""
    with monkeypatch.context() as m:
        m.setattr(runtime, "sys", SimpleNamespace(modules={}))
        return runtime.load(folder, CLASS, {"engine": "litert"})


def runtime_logits(model):
    return np.asarray(model.forward(IDS, MASK, np.zeros_like(IDS)).logits)


def test_the_runtime_path_runs_an_intact_entry(built, root, monkeypatch):
    """The baseline the refusals below are measured against."""
    got = on_runtime(built.a.folder, monkeypatch)
    assert isinstance(got, runtime.RuntimeModel) and got.forward.folder == str(root / built.a.key)
    assert np.abs(runtime_logits(got) - built.a.want).max() <= 1e-5


def test_another_models_entry_in_this_models_folder_is_rebuilt(built, root, monkeypatch):
    """Copied in with its manifest, another model's entry is intact, but not this key's: it must not run."""
    shutil.rmtree(root / built.a.key)
    shutil.copytree(root / built.b.key, root / built.a.key)
    assert engine.read_entry(str(root / built.a.key)) is None
    assert on_runtime(built.a.folder, monkeypatch) is None
    model = load(built.a.folder)
    with pytest.warns(UserWarning, match="damaged or stale; rebuilding"):
        got = logits(model)
    assert np.abs(got - built.a.want).max() <= 1e-5
    assert model.compiled_forward().folder == str(root / built.a.key)
    assert engine.read_entry(str(root / built.a.key))["key"] == built.a.key


def test_an_index_naming_a_folder_outside_the_cache_is_refused(built, root, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere" / built.b.key
    shutil.copytree(root / built.b.key, elsewhere)
    assert engine.read_entry(str(elsewhere)) is not None  # an intact entry: only where it lies is wrong
    index = root / runtime.INDEX / f"{built.a.source}.json"
    for name in (str(elsewhere), os.path.relpath(elsewhere, root), f"../litert/{built.b.key}", f"./{built.b.key}",
                 f"{built.b.key}/", ".", "..", "", None, ["x"]):
        index.write_text(json.dumps({"entry": name}))
        assert on_runtime(built.a.folder, monkeypatch) is None, name
    # a bare name that is a symlink to a folder outside the cache
    shutil.rmtree(root / built.b.key)
    os.symlink(elsewhere, root / built.b.key)
    index.write_text(json.dumps({"entry": built.b.key}))
    assert on_runtime(built.a.folder, monkeypatch) is None


def test_a_symlinked_entry_is_not_followed(built, root, tmp_path, monkeypatch):
    real = tmp_path / "elsewhere" / built.a.key
    shutil.move(root / built.a.key, real)
    os.symlink(real, root / built.a.key)
    assert engine.read_entry(str(root / built.a.key)) is None
    assert on_runtime(built.a.folder, monkeypatch) is None
    model = load(built.a.folder)
    with pytest.warns(UserWarning, match="damaged or stale; rebuilding"):
        got = logits(model)
    assert np.abs(got - built.a.want).max() <= 1e-5
    entry = root / built.a.key
    assert not entry.is_symlink() and entry.is_dir() and engine.read_entry(str(entry)) is not None
    assert engine.read_entry(str(real)) is not None  # the link was removed, not what it pointed at


def test_a_cache_other_users_can_write_is_not_used(built, root, tmp_path, monkeypatch):
    """A shared cache (mode 1777, files 0777): another local user could have put any model there."""
    os.chmod(root, 0o1777)
    for name in os.listdir(root / built.a.key):
        os.chmod(root / built.a.key / name, 0o777)
    assert on_runtime(built.a.folder, monkeypatch) is None
    model = load(built.a.folder)
    with pytest.warns(UserWarning, match=f"{root}.*writ.*not using it"):
        got = logits(model)
    assert np.abs(got - built.a.want).max() <= 1e-5
    assert model.compiled_forward().folder.startswith(str(tmp_path / "tmp" / f"minibert-{os.getuid()}"))


def test_entries_another_user_could_have_written_are_refused(built, root, monkeypatch):
    folder = root / built.a.key
    index = root / runtime.INDEX / f"{built.a.source}.json"
    assert engine.read_entry(str(folder)) is not None
    for path in (folder, folder / engine.MODEL_FILE, folder / engine.INFO_FILE, folder / default_model.MANIFEST,
                 index, index.parent, root):
        before = stat.S_IMODE(os.stat(path).st_mode)
        for mode in (before | stat.S_IWGRP, before | stat.S_IWOTH):
            os.chmod(path, mode)
            if path not in (index, index.parent, root):
                assert engine.read_entry(str(folder)) is None, (path, oct(mode))
            assert on_runtime(built.a.folder, monkeypatch) is None, (path, oct(mode))
        os.chmod(path, before)
    assert isinstance(on_runtime(built.a.folder, monkeypatch), runtime.RuntimeModel)
    # owned by another user: the files as they are, seen by a process of another uid
    with monkeypatch.context() as m:
        m.setattr(os, "getuid", lambda: os.geteuid() + 4242)
        assert engine.read_entry(str(folder)) is None
    if os.geteuid() == 0:  # root can give a file away for real
        os.chown(folder / engine.MODEL_FILE, 4242, -1)
        assert engine.read_entry(str(folder)) is None
        assert on_runtime(built.a.folder, monkeypatch) is None
        os.chown(folder / engine.MODEL_FILE, 0, -1)
    # a file of the entry replaced by a link to the same bytes
    flatbuffer = folder / engine.MODEL_FILE
    shutil.move(flatbuffer, folder.parent / "moved.tflite")
    os.symlink(folder.parent / "moved.tflite", flatbuffer)
    assert engine.read_entry(str(folder)) is None


# -- sharded checkpoints: the index is checked before anything it names is opened -------------------------
@pytest.fixture
def guarded_hashing(monkeypatch):
    """Hashing a file other than config.json or the index fails the test at once (unguarded, it could hang)."""
    real = default_model._hash_once

    def hash_once(path, *args):
        if os.path.basename(path) not in ("config.json", checkpoint.SAFE_INDEX):
            raise AssertionError(f"{path} was hashed before its index was checked")
        return real(path, *args)

    monkeypatch.setattr(default_model, "_hash_once", hash_once)


def sharded(tmp_path, built, weight_map) -> str:
    folder = tmp_path / "sharded"
    folder.mkdir()
    shutil.copy(os.path.join(built.a.folder, "config.json"), folder)
    (folder / checkpoint.SAFE_INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return str(folder)


def fifo_map(tmp_path):
    os.mkfifo(tmp_path / "sharded" / "model-00001-of-00001.safetensors")
    return {"bert.pooler.dense.weight": "model-00001-of-00001.safetensors"}


@pytest.mark.parametrize("case", ["outside", "fifo", "list"])
def test_a_bad_shard_index_is_refused_alike_on_both_engines(built, tmp_path, monkeypatch, guarded_hashing, case):
    weight_map = {"outside": {"bert.pooler.dense.weight": "/dev/zero"}, "fifo": {}, "list": ["model.safetensors"]}[case]
    folder = sharded(tmp_path, built, weight_map)
    if case == "fifo":
        (tmp_path / "sharded" / checkpoint.SAFE_INDEX).write_text(json.dumps({"weight_map": fifo_map(tmp_path)}))
    with pytest.raises(checkpoint.CheckpointError) as keras_path:
        checkpoint.read_state_dict(folder)
    said = str(keras_path.value)
    assert "\n" not in said
    with pytest.raises(checkpoint.CheckpointError) as litert_path:
        runtime.source_key(folder, CLASS, "float32")
    assert str(litert_path.value) == said
    assert on_runtime(folder, monkeypatch) is None  # the usual loader then says it, in the same line
    with pytest.raises(checkpoint.CheckpointError, match="^" + re.escape(said) + "$"):
        minibert.AutoModelForSequenceClassification.from_pretrained(folder, engine="litert")


def test_a_manifest_naming_a_file_outside_the_folder_is_not_hashed(built, tmp_path, guarded_hashing):
    folder = tmp_path / "with-manifest"
    shutil.copytree(built.a.folder, folder)
    (folder / default_model.MANIFEST).write_text(json.dumps({os.path.relpath("/dev/zero", folder): [0, 1, "0" * 64],
                                                             "config.json": [1, 1, "0" * 64]}))
    assert not default_model._intact(str(folder), required=["config.json"])
