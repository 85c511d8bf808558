"""minibert: BERT-family inference in TensorFlow/Keras 3, written to be read and proven exact.

`import minibert` is light: TensorFlow is imported the first time a model name is used.
The names match transformers', with and without the `TF` prefix.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_LAZY = {
    "BertConfig": "config", "DistilBertConfig": "config", "AutoConfig": "config", "PretrainedConfig": "config",
    "AutoTokenizer": "tokenizer", "PreTrainedTokenizer": "tokenizer", "BatchEncoding": "tokenizer",
    "AutoModel": "auto", "AutoModelForSequenceClassification": "auto",
    "TFAutoModel": "auto", "TFAutoModelForSequenceClassification": "auto",
    "BertModel": "models.bert", "BertForSequenceClassification": "models.bert",
    "DistilBertModel": "models.distilbert", "DistilBertForSequenceClassification": "models.distilbert",
    "ModelOutput": "outputs",
    "pipeline": "pipelines",
}
_ALIASES = {  # transformers' TensorFlow class names
    "TFBertModel": "BertModel", "TFBertForSequenceClassification": "BertForSequenceClassification",
    "TFDistilBertModel": "DistilBertModel", "TFDistilBertForSequenceClassification": "DistilBertForSequenceClassification",
}
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
