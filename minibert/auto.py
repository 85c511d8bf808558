"""model_type -> classes, and the Auto* names transformers users reach for (plain and TF*).

The family registry (`minibert.families`) names each family's module under `minibert.models` and its
heads; an `AutoModelFor…` class picks the family by the checkpoint's `model_type`, as transformers does.
A checkpoint whose head does not fit the class asked for still loads, with transformers' report of unused
and newly initialised weights.
"""
from __future__ import annotations

import importlib

from .config import AutoConfig, PretrainedConfig
from .families import REGISTRY, Family


def _classes(family: Family) -> dict:
    module = importlib.import_module(f".models.{family.module}", __package__)
    return {head: getattr(module, family.class_name(head)) for head in family.heads}


# model_type -> head name -> class
FAMILIES = {model_type: _classes(f) for model_type, f in REGISTRY.items()}


def model_class(config: PretrainedConfig, head: str):
    return FAMILIES[config.model_type][head]


def class_for_architecture(config: PretrainedConfig):
    """The class that `architectures` in config.json names (e.g. BertForTokenClassification), or the
    bare encoder when it names none we have."""
    by_name = {cls.__name__: cls for cls in FAMILIES[config.model_type].values()}
    for name in config.extra.get("architectures") or []:
        cls = by_name.get(str(name).removeprefix("TF"))
        if cls is not None:
            return cls
    return FAMILIES[config.model_type]["model"]


class _AutoModel:
    head = "model"

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs):
        return model_class(config, cls.head)(config, **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path, config: PretrainedConfig | None = None, **kwargs):
        """Extra keyword arguments override config fields, as in transformers (`num_labels=3`)."""
        from .checkpoint import HUB_KWARGS, resolve
        from .modeling import matmul_dtype

        dtype = matmul_dtype(kwargs.pop("dtype", None))  # a bad value fails before anything is read
        engine = kwargs.pop("engine", None)
        folder = resolve(name_or_path, **{k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs})
        loading_info = kwargs.pop("output_loading_info", False)
        if config is None:
            config = AutoConfig.from_pretrained(folder, **kwargs)
        elif kwargs:
            raise TypeError(f"unexpected keyword arguments {sorted(kwargs)} next to config=")
        return model_class(config, cls.head).from_pretrained(folder, config=config, output_loading_info=loading_info,
                                                             dtype=dtype, engine=engine)


def _auto(suffix: str, head: str) -> type:
    doc = f"The {head.replace('-', ' ')} class for the checkpoint's `model_type`." if head != "model" else \
        "The bare encoder for the checkpoint's `model_type`."
    return type(f"AutoModel{suffix}", (_AutoModel,), {"head": head, "__doc__": doc})


AutoModel = _auto("", "model")
AutoModelForSequenceClassification = _auto("ForSequenceClassification", "sequence-classification")
AutoModelForMultipleChoice = _auto("ForMultipleChoice", "multiple-choice")
AutoModelForTokenClassification = _auto("ForTokenClassification", "token-classification")
AutoModelForQuestionAnswering = _auto("ForQuestionAnswering", "question-answering")
AutoModelForMaskedLM = _auto("ForMaskedLM", "masked-lm")

# transformers' TensorFlow names
TFAutoModel = AutoModel
TFAutoModelForSequenceClassification = AutoModelForSequenceClassification
TFAutoModelForMultipleChoice = AutoModelForMultipleChoice
TFAutoModelForTokenClassification = AutoModelForTokenClassification
TFAutoModelForQuestionAnswering = AutoModelForQuestionAnswering
TFAutoModelForMaskedLM = AutoModelForMaskedLM
