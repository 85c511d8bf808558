import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
# transformers 4.x would otherwise try its TensorFlow classes (which need tf-keras): the reference is PyTorch.
os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("USE_TORCH", "1")
# The suite proves the Keras path on every CPU kind, whatever engine `cpu.ENGINE_RULE` picks for the one it
# runs on; the engine's tests (tests/models/test_engine.py) choose LiteRT themselves. MINIBERT_ENGINE=litert
# runs the whole suite through the compiled engine instead.
os.environ.setdefault("MINIBERT_ENGINE", "keras")
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402

from reference import TINY_BERT, TINY_DISTILBERT, make_checkpoint, minilm_dir  # noqa: E402



@pytest.fixture(scope="session")
def tiny_distilbert_cls(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("tiny_distilbert_cls"), "distilbert", "sequence-classification", **TINY_DISTILBERT)


@pytest.fixture(scope="session")
def tiny_bert_cls(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("tiny_bert_cls"), "bert", "sequence-classification", num_labels=3, **TINY_BERT)


@pytest.fixture(scope="session")
def tiny_bert_base(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("tiny_bert_base"), "bert", "model", **TINY_BERT)


@pytest.fixture(scope="session")
def distilbert_base_cls(tmp_path_factory):
    """A distilbert-base-uncased-sized sentiment classifier (random weights) with the MiniLM/uncased tokenizer."""
    import shutil

    folder = make_checkpoint(tmp_path_factory.mktemp("distilbert_base_cls"), "distilbert", "sequence-classification", seed=1,
                             id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(os.path.join(minilm_dir(), name), folder)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "DistilBertTokenizer", "model_max_length": 512, "do_lower_case": True}, f)
    return folder


@pytest.fixture(scope="session")
def minilm():
    return minilm_dir()
