"""minibert: BERT-family inference in TensorFlow/Keras 3, written to be read and proven exact.

`import minibert` is light: TensorFlow is imported the first time a model name is used.
The names match transformers', with and without the `TF` prefix.
"""
from __future__ import annotations

import importlib

from . import cpu as _cpu
from . import families as _families

__version__ = "0.1.0"
_cpu.configure()  # the CPU's kernel path: must run before TensorFlow is imported (it reads TF_ENABLE_ONEDNN_OPTS once)

# public name -> module that defines it (imported on first use); the family names come from the registry
_LAZY = {
    "AutoConfig": "config", "PretrainedConfig": "config",
    **{f.config_name: "config" for f in _families.REGISTRY.values()},
    "AutoTokenizer": "tokenizer", "PreTrainedTokenizer": "tokenizer", "BatchEncoding": "tokenizer",
    "ModelOutput": "outputs",
    "pipeline": "pipelines",
    "SentenceTransformer": "sentence_transformers", "CrossEncoder": "sentence_transformers",
    **{f"AutoModel{_families.HEAD_SUFFIXES[head].removeprefix('Model')}": "auto" for head in _families.SHARED_HEADS},
    **{f.class_name(head): f"models.{f.module}" for f in _families.REGISTRY.values() for head in f.heads},
}
_ALIASES = {f"TF{name}": name for name, module in _LAZY.items() if module == "auto" or module.startswith("models.")}  # transformers' TF names
__all__ = sorted([*_LAZY, *_ALIASES])


def __getattr__(name):
    target = _ALIASES.get(name, name)
    if target not in _LAZY:
        raise AttributeError(f"module 'minibert' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[target]}", __name__), target)
    globals()[name] = value
    return value


def __dir__():
    return __all__
