"""The tokenizer against transformers' tokenizer on the same files, and its conventions."""
import json
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


# -- the features the pipelines use: offsets, special-token masks, overflow with stride ------------
LONG = ("The quick brown fox, naïve and résumé-ready, met 東京 friends at the café. " * 6).strip()
FEATURE_TEXTS = [LONG, "short one", "", "Zoë visited 北京 and São Paulo in 2019!"]


def plain(value):
    """Nested lists of ints whatever the container (tuples for offsets, arrays for tensors)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def assert_same_encoding(ours, theirs):
    assert list(ours) == list(theirs)
    for k in theirs:
        assert type(ours[k]) is type(theirs[k]) or isinstance(theirs[k], np.ndarray) and ours[k].dtype == theirs[k].dtype, k
        assert plain(ours[k]) == plain(theirs[k]), k
    rows = len(theirs["input_ids"]) if isinstance(theirs["input_ids"][0], (list, np.ndarray)) else 1
    assert len(ours.encodings) == rows
    for i in range(rows):
        assert ours.word_ids(i) == theirs.word_ids(i) and ours.sequence_ids(i) == theirs.sequence_ids(i)


@pytest.mark.parametrize("kwargs", [
    dict(return_offsets_mapping=True, return_special_tokens_mask=True),
    dict(return_offsets_mapping=True, truncation=True, max_length=12, stride=3, return_overflowing_tokens=True),
    dict(truncation=True, max_length=16, stride=5, return_overflowing_tokens=True, padding=True,
         return_special_tokens_mask=True, return_offsets_mapping=True, return_tensors="np"),
    dict(truncation=True, max_length=10, return_overflowing_tokens=True),  # stride 0: back-to-back windows
])
def test_features_match_transformers(tok, ref, kwargs):
    assert_same_encoding(tok(FEATURE_TEXTS, **kwargs), ref(FEATURE_TEXTS, **kwargs))
    assert_same_encoding(tok(LONG, **kwargs), ref(LONG, **kwargs))  # one text: a batch axis only with overflow


@pytest.mark.parametrize("kwargs", [
    dict(truncation="only_second", max_length=20, stride=4),
    dict(truncation="only_first", max_length=20, stride=2),
    dict(truncation="longest_first", max_length=20, stride=2),
    dict(truncation="only_second", max_length=24, stride=6, padding=True, return_tensors="np"),
])
def test_pair_overflow_matches_transformers(tok, ref, kwargs):
    questions = ["Where did the fox meet its friends?", "Who?", "What is 東京?"]
    contexts = [LONG, "Zoë.", LONG[:150]]
    kw = dict(return_overflowing_tokens=True, return_offsets_mapping=True, return_special_tokens_mask=True, **kwargs)
    if kwargs["truncation"] == "only_first":
        questions, contexts = contexts, questions
    assert_same_encoding(tok(questions, contexts, **kw), ref(questions, contexts, **kw))


def test_kept_lengths_are_what_the_rust_tokenizer_keeps(tok):
    """The stride check predicts the truncation; here the prediction meets the real thing."""
    from minibert.tokenizer import _kept_lengths

    for n1 in (0, 1, 3, 8, 15):
        for n2 in (0, 2, 7, 16):
            for strategy in ("only_first", "only_second", "longest_first"):
                a, b = " ".join(["x"] * n1), " ".join(["y"] * n2)
                try:
                    enc = tok(a, b, truncation=strategy, max_length=13)
                except ValueError:
                    continue  # the side to cut is too short: the Rust tokenizer refuses
                ids = enc.encodings[0].sequence_ids
                assert _kept_lengths(n1, n2, 10, strategy) == (ids.count(0), ids.count(1)), (n1, n2, strategy)


def test_convert_tokens_to_string_and_counts(tok, ref):
    tokens = ["hel", "##lo", ",", "world", "'", "s", "caf", "##e"]
    assert tok.convert_tokens_to_string(tokens) == ref.convert_tokens_to_string(tokens)
    assert (tok.num_special_tokens_to_add(), tok.num_special_tokens_to_add(pair=True)) == \
           (ref.num_special_tokens_to_add(), ref.num_special_tokens_to_add(pair=True))
    assert tok.mask_token_id == ref.mask_token_id and tok.unk_token_id == ref.unk_token_id


class TestBadTexts:
    def test_lone_surrogate_names_the_input(self, tok):
        with pytest.raises(ValueError, match=r"text\[1\] is not valid Unicode: a lone surrogate '\\ud800' at character 4"):
            tok(["fine", "bad \ud800 x"])
        with pytest.raises(ValueError, match=r"text_pair\[0\] is not valid Unicode"):
            tok(["a"], ["\udfff"])
        assert tok("fine")["input_ids"] == [101, 2986, 102]

    def test_bytes(self, tok):
        with pytest.raises(TypeError, match=r"text is bytes, expected str: decode it first"):
            tok(b"x")
        with pytest.raises(TypeError, match=r"text\[1\] is bytes"):
            tok(["a", b"x"])

    @pytest.mark.parametrize("kwargs, message", [
        (dict(truncation=True, max_length=-5), r"max_length=-5; it must be at least 1"),
        (dict(truncation=True, max_length=1), r"max_length=1 leaves no room: the special tokens alone take 2"),
        (dict(truncation=True, max_length=8, stride=6, return_overflowing_tokens=True),
         r"stride=6 must be less than max_length=8 minus the 2 special tokens \(6\)"),
        (dict(truncation=True, stride=-1), r"stride=-1; it must be at least 0"),
        (dict(truncation=True, max_length=2.5), r"max_length must be an int, got float"),
    ])
    def test_numbers(self, tok, kwargs, message):
        with pytest.raises((ValueError, TypeError), match=message):
            tok(LONG, **kwargs)

    def test_pair_stride_beyond_what_truncation_keeps(self, tok):
        question = "what " * 14  # leaves 20 - 3 - 14 = 3 context tokens
        with pytest.raises(ValueError, match=r"pair 1: truncation='only_second' keeps 3 of the \d+ tokens of its "
                                             r"text_pair within max_length=20, not more than stride=4"):
            tok(["who?", question], [LONG, LONG], truncation="only_second", max_length=20, stride=4,
                return_overflowing_tokens=True)
        with pytest.raises(ValueError, match="too short"):  # the Rust tokenizer's own refusal, as a ValueError
            tok("what " * 30, "short", truncation="only_second", max_length=20)

    @pytest.mark.parametrize("value", ["abc", -3, 1.5, True])
    def test_bad_model_max_length_names_file_and_field(self, tmp_path, minilm, value):
        for name in ("tokenizer.json", "special_tokens_map.json"):
            shutil.copy(os.path.join(minilm, name), tmp_path)
        (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": value}))
        with pytest.raises(TokenizerError, match=r"model_max_length in .*tokenizer_config.json must be a positive integer"):
            minibert.AutoTokenizer.from_pretrained(str(tmp_path))
        with pytest.raises(TokenizerError, match=r"the model_max_length argument must be a positive integer"):
            minibert.AutoTokenizer.from_pretrained(minilm, model_max_length=value)


# -- tokenizer files that try to hurt -------------------------------------------------------------
def vocab_only(folder, minilm, edit=None):
    """A folder holding only MiniLM's vocab.txt (optionally edited: lines -> lines), as old BERT repos ship."""
    os.makedirs(folder, exist_ok=True)
    lines = open(os.path.join(minilm, "vocab.txt"), encoding="utf-8").read().splitlines()
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(edit(lines) if edit else lines) + "\n")
    return str(folder)


def test_vocab_only_folder_matches_special_tokens_whole_as_transformers(tmp_path, minilm):
    """`[MASK]`, `[SEP]` in a text are one token each (fill-mask needs it), as BertTokenizerFast has them."""
    import transformers

    folder = vocab_only(tmp_path, minilm)
    texts = ["Paris is the [MASK] of France.", "a [SEP] b [CLS]c[PAD] [UNK]", "lower [mask] is a word", "[MASK]"]
    ours = minibert.AutoTokenizer.from_pretrained(folder)
    theirs = transformers.BertTokenizerFast.from_pretrained(folder)
    assert ours(texts)["input_ids"] == theirs(texts)["input_ids"]
    assert ours.tokenize(texts[0]) == theirs.tokenize(texts[0]) and "[MASK]" in ours.tokenize(texts[0])


@pytest.mark.parametrize("kind", ["duplicate", "no_unk"])
def test_vocab_with_a_repeated_entry_or_no_unknown_token_is_refused(tmp_path, minilm, kind):
    import re

    lines = open(os.path.join(minilm, "vocab.txt"), encoding="utf-8").read().splitlines()
    if kind == "duplicate":  # line 1,997's token again as line 2,001: transformers and tokenizers give it other ids
        edit = lambda ls: ls[:2000] + [ls[1996]] + ls[2000:]  # noqa: E731
        message = rf"vocab\.txt line 2001: {re.escape(repr(lines[1996]))} is already on line 1997; each token must be listed once$"
    else:  # unknown words would go nowhere
        edit = lambda ls: [t for t in ls if t != "[UNK]"]  # noqa: E731
        message = r"vocab\.txt has no line for the unknown token '\[UNK\]'"
    with pytest.raises(TokenizerError, match=message):
        minibert.AutoTokenizer.from_pretrained(vocab_only(tmp_path, minilm, edit))


def with_tokenizer_json(folder, minilm, edit):
    """MiniLM's tokenizer folder with tokenizer.json edited (a function of its parsed JSON)."""
    shutil.copytree(minilm, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.onnx", "*.bin", "onnx"))
    path = os.path.join(folder, "tokenizer.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    edit(data)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return str(folder)


def test_added_token_that_does_not_get_its_declared_id_is_refused(tmp_path, minilm):
    def declare_far(data):
        data["added_tokens"].append({"id": 40000, "content": "<extra>", "single_word": False, "lstrip": False,
                                     "rstrip": False, "normalized": False, "special": True})

    folder = with_tokenizer_json(tmp_path / "v", minilm, declare_far)
    with pytest.raises(TokenizerError, match=r"tokenizer\.json: added token '<extra>' declares id 40000 but gets id "
                                             r"\d+ \(the vocabulary has 30522 entries\)"):
        minibert.AutoTokenizer.from_pretrained(folder)


def test_normalizer_that_expands_without_bound_is_refused_at_load(tmp_path, minilm):
    """A Replace of one character by 200,000 turns 2,000 characters into 4e8: the tokenizers library aborts the
    process (SIGABRT) allocating for it, so it is refused when the file is read, before any text."""
    def expand(data):
        data["normalizer"] = {"type": "Sequence", "normalizers": [
            data["normalizer"], {"type": "Replace", "pattern": {"String": "a"}, "content": "b" * 200_000}]}

    folder = with_tokenizer_json(tmp_path / "v", minilm, expand)
    with pytest.raises(TokenizerError, match=r"tokenizer\.json: its normalizer can make a text 200,000 times longer "
                                             r"\(Replace 'a' by 200000 characters\); minibert refuses more than 16"):
        minibert.AutoTokenizer.from_pretrained(folder)


def test_real_normalizers_pass_the_expansion_bound(tmp_path, minilm):
    """XLM-R's collapse of runs of spaces (a regex Replace) and quote rewrites stay well inside the bound."""
    def collapse(data):
        data["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            {"type": "Replace", "pattern": {"String": "``"}, "content": "\""}, data["normalizer"]]}

    tok = minibert.AutoTokenizer.from_pretrained(with_tokenizer_json(tmp_path / "v", minilm, collapse))
    assert tok.tokenize("a   b ``c") == ["a", "b", "\"", "c"]


def test_rust_panic_on_a_backtracking_pattern_is_one_line_and_the_tokenizer_stays_usable(tmp_path, minilm):
    """Oniguruma gives up on a pattern that backtracks past its limit and the tokenizers library panics
    (pyo3's PanicException, which `except Exception` misses): a ValueError naming the file instead."""
    def backtrack(data):
        data["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "(\\w|\\w\\w)*[^\\wc]"},
                                 "behavior": "Isolated", "invert": False}

    folder = with_tokenizer_json(tmp_path / "v", minilm, backtrack)
    tok = minibert.AutoTokenizer.from_pretrained(folder)
    for call in (lambda: tok(["fine", "a" * 40 + "c"]), lambda: tok.tokenize("a" * 40 + "c")):
        with pytest.raises(ValueError, match=r"^the tokenizer from \S+/v/tokenizer\.json failed on this input: "
                                             r"Onig: Regex search error: retry-limit-in-match over$"):
            call()
    assert tok("fine")["input_ids"][0] == 101
