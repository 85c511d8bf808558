"""The tokenizer against transformers' tokenizer on the same files, and its conventions."""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import minibert
from minibert.tokenizer import TokenizerError
from reference import MINILM_IDS, MINILM_TEXT

TEXTS = [MINILM_TEXT, "I hate this so much!", "", "Café naïve résumé — 東京 emoji 🙂 tabs\tand  spaces",
         "word " * 600]


@pytest.fixture(scope="module")
def tok(minilm):
    return minibert.AutoTokenizer.from_pretrained(minilm)


@pytest.fixture(scope="module")
def ref(minilm):
    import transformers

    return transformers.AutoTokenizer.from_pretrained(minilm)


def test_seed_ids_and_decode(tok):
    enc = tok(MINILM_TEXT)
    assert enc["input_ids"] == MINILM_IDS and enc.input_ids == MINILM_IDS
    assert tok.decode(enc["input_ids"]) == "[CLS] i've been waiting for a huggingface course my whole life. [SEP]"
    assert tok.decode(enc["input_ids"], skip_special_tokens=True) == "i've been waiting for a huggingface course my whole life."
    tokens = tok.tokenize("Using a Transformer network is simple")
    assert tokens == ["using", "a", "transform", "##er", "network", "is", "simple"]
    assert tok.convert_tokens_to_ids(tokens) == [2478, 1037, 10938, 2121, 2897, 2003, 3722]
    assert tok.convert_ids_to_tokens([101, 2478]) == ["[CLS]", "using"]


@pytest.mark.parametrize("kwargs", [
    dict(padding=True, truncation=True),
    dict(padding="max_length", truncation=True, max_length=24),
    dict(padding="longest", truncation=True, max_length=10),
])
def test_matches_transformers(tok, ref, kwargs):
    ours, theirs = tok(TEXTS, return_tensors="np", **kwargs), ref(TEXTS, return_tensors="np", **kwargs)
    assert list(ours) == list(theirs)
    for k in theirs:
        np.testing.assert_array_equal(ours[k], theirs[k])


def test_pairs_match_transformers(tok, ref):
    a, b = ["How old are you?", "Where " * 300], ["I'm 6 years old", "there"]
    for kwargs in (dict(padding=True), dict(padding=True, truncation=True), dict(padding=True, truncation="only_first", max_length=20)):
        ours, theirs = tok(a, b, return_tensors="np", **kwargs), ref(a, b, return_tensors="np", **kwargs)
        for k in theirs:
            np.testing.assert_array_equal(ours[k], theirs[k])
    assert tok(list(zip(a, b)), padding=True)["input_ids"] == ref(a, b, padding=True)["input_ids"]
    assert tok("a b", "c")["token_type_ids"] == [0, 0, 0, 0, 1, 1]


def test_tensor_types(tok):
    enc = tok(["a", "b c d"], padding=True, return_tensors="tf")
    assert isinstance(enc["input_ids"], tf.Tensor) and enc["input_ids"].shape == (2, 5)
    assert tok("a", return_tensors="np")["input_ids"].shape == (1, 3)
    with pytest.raises(ValueError, match="padding=True"):
        tok(["a", "b c d"], return_tensors="np")
    with pytest.raises(ValueError, match="no PyTorch"):
        tok("a", return_tensors="pt")


def test_truncation_defaults_to_model_max_length(tok):
    assert tok.model_max_length == 512
    assert len(tok("word " * 600, truncation=True)["input_ids"]) == 512
    assert len(tok("word " * 600)["input_ids"]) == 602  # no truncation unless asked, as in transformers


def test_special_tokens(tok):
    assert (tok.pad_token_id, tok.cls_token, tok.sep_token, tok.cls_token_id, tok.sep_token_id) == (0, "[CLS]", "[SEP]", 101, 102)
    assert tok.vocab_size == 30522


def test_vocab_txt_only_folder(tmp_path, minilm, ref):
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(minilm, name), tmp_path)
    slow = minibert.AutoTokenizer.from_pretrained(str(tmp_path))
    assert not os.path.exists(tmp_path / "tokenizer.json")
    ours, theirs = slow(TEXTS, padding=True, truncation=True), ref(TEXTS, padding=True, truncation=True)
    assert ours["input_ids"] == theirs["input_ids"] and ours["token_type_ids"] == theirs["token_type_ids"]


def test_distilbert_tokenizer_has_no_token_types(distilbert_base_cls):
    tok = minibert.AutoTokenizer.from_pretrained(distilbert_base_cls)  # config.json says distilbert
    assert list(tok("hello")) == ["input_ids", "attention_mask"]


class TestBadInput:
    def test_empty_list(self, tok):
        with pytest.raises(ValueError, match="empty list"):
            tok([])

    def test_non_string_names_position(self, tok):
        with pytest.raises(TypeError, match=r"text\[1\] is int"):
            tok(["a", 3])
        assert tok("a")["input_ids"] == [101, 1037, 102]

    def test_missing_files(self, tmp_path):
        (tmp_path / "config.json").write_text("{}")
        with pytest.raises(TokenizerError, match=r"no tokenizer.json or vocab.txt in .*config.json"):
            minibert.AutoTokenizer.from_pretrained(str(tmp_path))

    def test_corrupt_tokenizer_json(self, tmp_path):
        (tmp_path / "tokenizer.json").write_text("{not json")
        with pytest.raises(TokenizerError, match="cannot read the tokenizer"):
            minibert.AutoTokenizer.from_pretrained(str(tmp_path))
