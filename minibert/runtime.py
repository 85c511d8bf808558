"""A cached LiteRT model run without TensorFlow: the start-up path of `pipeline()` and the command line.

TensorFlow's import alone takes seconds and hundreds of MB; a flatbuffer that was converted before needs
none of it. When a pipeline loads a model folder on the litert engine, `load` looks up the folder's
content (its config and weights files, the task's model class, the dtype) in an index beside the engine's
cache and, where an intact entry is found, returns a `RuntimeModel`: the config, and a forward run by
LiteRT on numpy arrays. Otherwise TensorFlow is imported, the Keras model is loaded and converted as usual
(`engine.py`), and `remember` records the entry for the next run.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile

import numpy as np

from . import engine

INDEX = "by-source"  # folder of the engine's cache: source key -> entry key
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


class HostArray(np.ndarray):
    """A numpy array that answers `.numpy()`, as the TensorFlow tensors the pipelines otherwise read do."""

    def numpy(self) -> np.ndarray:
        return self.view(np.ndarray)


def _host(a: np.ndarray) -> HostArray:
    return a.view(HostArray)


class RuntimeModel:
    """The pipelines' view of a model whose forward is a cached flatbuffer: its config, and a call on numpy inputs."""

    engine = "litert"
    takes_choices = False

    def __init__(self, config, forward: engine.LiteRTForward, class_name: str):
        self.config, self.forward, self.class_name = config, forward, class_name
        self.dtype_name = forward.info.get("dtype", "float32")

    def __repr__(self):
        return f"<{self.class_name} on LiteRT ({self.dtype_name}), {self.forward.folder}>"

    def __call__(self, inputs: dict):
        """The tokenizer's (B, T) arrays, as the pipelines pass them, to the model's output object."""
        ids = np.asarray(inputs["input_ids"], dtype=np.int64)
        mask = np.asarray(inputs.get("attention_mask", np.ones_like(ids)))
        types = np.asarray(inputs.get("token_type_ids", np.zeros_like(ids)))
        c = self.config
        if ids.ndim != 2 or mask.shape != ids.shape or types.shape != ids.shape:
            raise ValueError(f"input_ids, attention_mask and token_type_ids must be (batch, seq) alike, got "
                             f"{ids.shape}, {mask.shape}, {types.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= c.vocab_size):  # refused before LiteRT reads the table
            bad = ids.min() if ids.min() < 0 else ids.max()
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {c.vocab_size})")
        if types.size and (types.min() < 0 or types.max() >= c.type_vocab_size):
            raise ValueError(f"a token_type_id is outside [0, {c.type_vocab_size}) (type_vocab_size)")
        if ids.shape[1] > c.max_sequence_length:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds the model's {c.max_sequence_length}")
        return self.forward(ids.astype(np.int32), mask.astype(np.int32), types.astype(np.int32))


def _wanted(kwargs: dict) -> tuple[str, str] | None:
    """(engine, dtype) the pipeline's model arguments ask for, or None where they ask more than this path does."""
    if set(kwargs) - {"engine", "dtype"}:
        return None  # config overrides, Hub arguments: the full loader handles them
    dtype = kwargs.get("dtype") or "float32"
    if dtype not in engine.DTYPES:
        return None
    name = "litert" if dtype == "int8" else engine.engine_name(kwargs.get("engine"))
    return name, dtype


def source_key(folder: str, class_name: str, dtype: str) -> str | None:
    """A hash of the checkpoint folder's content as this model reads it, or None for a folder it cannot key."""
    from .checkpoint import SAFE_INDEX, SAFE_WEIGHTS, shard_files, unreadable
    from .default_model import MANIFEST, _intact, _sha256

    if unreadable(os.path.join(folder, "config.json")):
        return None
    names = ["config.json"]
    if os.path.isfile(os.path.join(folder, SAFE_WEIGHTS)):
        names.append(SAFE_WEIGHTS)
    elif os.path.lexists(os.path.join(folder, SAFE_INDEX)):
        # the Keras loader's checks (a CheckpointError), before anything the index names is hashed
        names += [SAFE_INDEX, *(os.path.basename(path) for path in shard_files(folder))]
    else:
        return None
    recorded = {}
    if _intact(folder, required=names):  # minibert's own folders (the default model) record each file's sha256
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
            recorded = {name: v[2] for name, v in json.load(f).items()}
    h = hashlib.sha256(json.dumps([engine.VERSION, class_name, dtype]).encode())
    for name in names:
        h.update(f"{name}:{recorded.get(name) or _sha256(os.path.join(folder, name))}".encode())
    return h.hexdigest()[:32]


def _index_file(key: str) -> str:
    return os.path.join(engine.cache_root(), INDEX, key + ".json")


def load(folder, class_name: str, kwargs: dict) -> RuntimeModel | None:
    """The cached model of a local checkpoint folder on LiteRT, or None when it must be loaded the usual way."""
    wanted = _wanted(kwargs)
    if wanted is None or wanted[0] != "litert" or engine.unavailable() or "tensorflow" in sys.modules:
        return None  # (with TensorFlow already imported, the Keras model costs little more and can do everything)
    if not isinstance(folder, (str, os.PathLike)) or not os.path.isdir(folder):
        return None
    folder = os.fspath(folder)
    try:
        key = source_key(folder, class_name, wanted[1])
        if key is None:
            return None
        root, index = engine.cache_root(), _index_file(key)
        if not _private(root, os.path.dirname(index), index):
            return None
        with open(index, encoding="utf-8") as f:
            name = json.load(f)["entry"]
        if not engine.is_key(name):  # a bare entry name: nothing outside the cache
            return None
        entry = os.path.join(root, name)
        info = engine.read_entry(entry)  # refuses a link, another key's files, files another user could write
        if info is None or info.get("dtype") != wanted[1]:
            return None
        from .config import AutoConfig

        config = AutoConfig.from_pretrained(folder)
        fwd = engine.LiteRTForward(entry, info, config.max_sequence_length, config.pad_token_id or 0,
                                   engine.output_class(info, import_family=False), wrap=_host)
        return RuntimeModel(config, fwd, class_name)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None  # no index entry, or one that does not hold: the usual way rebuilds what is needed


def _private(root: str, *paths: str) -> bool:
    """Whether only this user could have written the cache folder (a link to it is followed) and the index's
    folder and file (a link is refused)."""
    from .default_model import _not_private

    return _not_private(root, follow_symlinks=True) is None and not any(_not_private(p) for p in paths)


def remember(folder, class_name: str, kwargs: dict, model) -> None:
    """After the usual load: record which cache entry this folder's model converted to, for the next start."""
    wanted = _wanted(kwargs)
    if wanted is None or getattr(model, "engine", None) != "litert" or not isinstance(folder, (str, os.PathLike)) \
            or not os.path.isdir(folder):
        return
    fwd = model.compiled_forward()
    if not isinstance(fwd, engine.LiteRTForward) or os.path.dirname(fwd.folder) != engine.cache_root():
        return  # on Keras, or converted into a fallback folder this index does not cover
    try:
        key = source_key(os.fspath(folder), class_name, wanted[1])
        if key is None:
            return
        index = os.path.dirname(_index_file(key))
        os.makedirs(index, mode=0o755, exist_ok=True)  # not group-writable whatever the umask: `load` refuses that
        fd, tmp = tempfile.mkstemp(dir=index, prefix=".building-")  # mode 0600
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"entry": os.path.basename(fwd.folder)}, f)
        os.replace(tmp, _index_file(key))  # atomic: a reader sees the old record or the new one
    except OSError:
        pass  # the index is a shortcut: without it the next start imports TensorFlow, nothing worse
