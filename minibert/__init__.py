"""minibert: BERT-family inference in TensorFlow/Keras 3, written to be read and proven exact.

`import minibert` is light: TensorFlow is imported the first time a model name is used.
The names match transformers', with and without the `TF` prefix.
"""
from __future__ import annotations

import importlib

from . import cpu as _cpu

__version__ = "0.1.0"
_cpu.configure()  # the CPU's kernel path: must run before TensorFlow is imported (it reads TF_ENABLE_ONEDNN_OPTS once)

_HEAD_SUFFIXES = ("Model", "ForSequenceClassification", "ForMultipleChoice", "ForTokenClassification",
                  "ForQuestionAnswering", "ForMaskedLM")
# class-name prefix -> module
_FAMILIES = {"Bert": "models.bert", "DistilBert": "models.distilbert", "Roberta": "models.roberta",
             "XLMRoberta": "models.roberta", "Electra": "models.electra"}

# public name -> module that defines it (imported on first use)
_LAZY = {
    "BertConfig": "config", "DistilBertConfig": "config", "RobertaConfig": "config", "XLMRobertaConfig": "config",
    "ElectraConfig": "config", "AutoConfig": "config", "PretrainedConfig": "config",
    "AutoTokenizer": "tokenizer", "PreTrainedTokenizer": "tokenizer", "BatchEncoding": "tokenizer",
    "ModelOutput": "outputs",
    "pipeline": "pipelines",
    **{f"AutoModel{s.removeprefix('Model')}": "auto" for s in _HEAD_SUFFIXES},
    **{f"{family}{s}": module for family, module in _FAMILIES.items() for s in _HEAD_SUFFIXES},
    "ElectraForPreTraining": "models.electra",
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
