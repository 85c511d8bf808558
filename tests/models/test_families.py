"""The family registry: every table that names a family agrees with it, and reading it imports no TensorFlow."""
import subprocess
import sys

import pytest

import minibert
from minibert import config, families, tokenizer_files
from minibert.families import REGISTRY, family


def test_config_and_tokenizer_read_the_registry_without_tensorflow():
    code = ("import sys, minibert, minibert.config, minibert.tokenizer, minibert.tokenizer_files, minibert.families\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_lookup():
    assert (family("roberta").tokenizer, family("roberta").positions) == ("roberta", "from padding")
    assert (family("electra").tokenizer, family("electra").positions) == ("wordpiece", "absolute")
    assert family("gpt2") is None
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        families.Family("x", "x", "X", "sentencepiece", True, "absolute", ("X",))


@pytest.mark.parametrize("model_type", sorted(REGISTRY))
def test_every_table_follows_the_line(model_type):
    from minibert import auto

    f = REGISTRY[model_type]
    cfg = config.CONFIG_CLASSES[model_type]
    assert (cfg.__name__, cfg.model_type) == (f.config_name, model_type)
    assert getattr(minibert, f.config_name) is cfg
    assert tokenizer_files.FAMILY_OF_TYPE[model_type] == f.tokenizer
    assert all(tokenizer_files.FAMILY_OF_CLASS[name] == f.tokenizer for name in f.tokenizer_classes)
    assert (model_type in tokenizer_files.UNTYPED_TYPES) == (not f.token_types)
    assert sorted(auto.FAMILIES[model_type]) == sorted(f.heads)
    for head, cls in auto.FAMILIES[model_type].items():
        assert cls.__name__ == f.class_name(head) and cls.__module__ == f"minibert.models.{f.module}"
        assert cls.config_class is cfg
        assert getattr(minibert, cls.__name__) is cls and getattr(minibert, "TF" + cls.__name__) is cls
    uses_types = "token_type_ids" in tokenizer_files.input_names({}, {"model_type": model_type})
    assert uses_types == f.token_types
