"""model_type -> classes, and the Auto* names transformers users reach for (plain and TF*)."""
from __future__ import annotations

from .config import AutoConfig, PretrainedConfig, config_class_for, read_config_dict
from .models.bert import BertForSequenceClassification, BertModel
from .models.distilbert import DistilBertForSequenceClassification, DistilBertModel

MODEL_MAPPING = {"bert": BertModel, "distilbert": DistilBertModel}
SEQUENCE_CLASSIFICATION_MAPPING = {"bert": BertForSequenceClassification, "distilbert": DistilBertForSequenceClassification}


def is_sequence_classifier(config: PretrainedConfig) -> bool:
    """Whether a checkpoint's config.json names a sequence-classification architecture."""
    return any("SequenceClassification" in a for a in config.extra.get("architectures") or [])


class _AutoModel:
    _mapping: dict = {}

    @classmethod
    def _class_for(cls, config: PretrainedConfig):
        return cls._mapping[config.model_type]

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs):
        return cls._class_for(config)(config, **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path, *args, **kwargs):
        from .checkpoint import resolve

        hub_kw = {k: kwargs[k] for k in ("revision", "local_files_only", "cache_dir", "token") if k in kwargs}
        folder = resolve(name_or_path, **hub_kw)
        config = kwargs.pop("config", None)
        if config is None:
            d = read_config_dict(folder)
            config_cls = config_class_for(d.get("model_type"), f"{folder}/config.json")
            overrides = {k: kwargs.pop(k) for k in list(kwargs) if k not in hub_kw and k != "output_loading_info"}
            config = config_cls.from_dict(d, **overrides)
        model_cls = cls._class_for(config)
        return model_cls.from_pretrained(name_or_path, *args, config=config, **kwargs)


class AutoModel(_AutoModel):
    """The bare encoder for the checkpoint's `model_type`."""

    _mapping = MODEL_MAPPING


class AutoModelForSequenceClassification(_AutoModel):
    """The sequence classifier for the checkpoint's `model_type`."""

    _mapping = SEQUENCE_CLASSIFICATION_MAPPING


TFAutoModel = AutoModel
TFAutoModelForSequenceClassification = AutoModelForSequenceClassification
__all__ = ["AutoConfig", "AutoModel", "AutoModelForSequenceClassification", "TFAutoModel",
           "TFAutoModelForSequenceClassification", "MODEL_MAPPING", "SEQUENCE_CLASSIFICATION_MAPPING"]
