"""Folders with only a SentencePiece model (deberta-v3's spm.model, XLM-R's and CamemBERT's
sentencepiece.bpe.model) and no tokenizer.json: minibert converts the model as transformers'
`convert_slow_tokenizer` does. The models are trained here by the `sentencepiece` package (a test-only
dependency; minibert reads the file itself) and every expected value comes from transformers' fast
tokenizer converting the same file.
"""
import json
import os
import re

import pytest

import minibert
from minibert.tokenizer import TokenizerError
from test_family_tokenizers import CALLS, DEBERTA_SPM, PAIR_CALLS, PAIRS, TEXTS, as_lists, train_sentencepiece

XLMR_SPM = dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)  # fairseq's models: <unk> <s> </s>, no pad piece
# name -> (file, training options, tokenizer_config.json, config.json, transformers' class when nothing names one)
CASES = {
    # as microsoft/deberta-v3-base ships: no tokenizer_class, the model_type says which tokenizer
    "deberta-v3": ("spm.model", DEBERTA_SPM, {"do_lower_case": False, "vocab_type": "spm"},
                   {"model_type": "deberta-v2"}, None),
    "deberta-lower-punct": ("spm.model", DEBERTA_SPM, {"tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": True,
                                                       "split_by_punct": True}, None, None),
    "deberta-bare": ("spm.model", DEBERTA_SPM, None, None, "DebertaV2TokenizerFast"),
    "xlm-roberta": ("sentencepiece.bpe.model", dict(model_type="unigram", **XLMR_SPM), None,
                    {"model_type": "xlm-roberta"}, None),
    "xlm-roberta-bpe": ("sentencepiece.bpe.model", dict(model_type="bpe", **XLMR_SPM),
                        {"tokenizer_class": "XLMRobertaTokenizer"}, None, None),
    "xlm-roberta-bare": ("sentencepiece.bpe.model", dict(model_type="unigram", **XLMR_SPM), None, None,
                         "XLMRobertaTokenizerFast"),
    "camembert": ("sentencepiece.bpe.model", dict(model_type="unigram", **XLMR_SPM),
                  {"tokenizer_class": "CamembertTokenizer"}, None, None),
}
MORE_TEXTS = ["a [MASK] here and <mask> there", "[CLS] inside [SEP] and <s> x </s>", "UPPER, lower; Punct!?"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    models = {}
    out = {}
    for name, (file, options, cfg, model_cfg, _) in CASES.items():
        folder = tmp_path_factory.mktemp(name)
        key = json.dumps(options, sort_keys=True)
        if key not in models:  # train each kind of model once
            models[key] = train_sentencepiece(tmp_path_factory.mktemp("spm") / "model", **options)
        with open(models[key], "rb") as src, open(folder / file, "wb") as dst:
            dst.write(src.read())
        for json_name, value in (("tokenizer_config.json", cfg), ("config.json", model_cfg)):
            if value is not None:
                (folder / json_name).write_text(json.dumps(value))
        out[name] = str(folder)
    return out


def both(folders, name):
    import transformers

    cls = CASES[name][4]
    ref = getattr(transformers, cls).from_pretrained(folders[name]) if cls else \
        transformers.AutoTokenizer.from_pretrained(folders[name])
    return minibert.AutoTokenizer.from_pretrained(folders[name]), ref


@pytest.mark.parametrize("name", sorted(CASES))
def test_conversion_equals_transformers(folders, name):
    """The converted tokenizer (normalizer, pre-tokenizer, model with its vocabulary and scores or merges, added
    tokens and their flags, post-processor, decoder) is transformers' own, and so are ids, token types,
    masks, offsets, overflow and decoding."""
    ours, ref = both(folders, name)
    assert os.listdir(folders[name]) and "tokenizer.json" not in os.listdir(folders[name])
    assert json.loads(ours.backend_tokenizer.to_str()) == json.loads(ref.backend_tokenizer.to_str())
    texts = TEXTS + MORE_TEXTS
    for kw in CALLS:
        assert as_lists(ours(texts, **kw)) == as_lists(ref(texts, **kw)), kw
    for kw in PAIR_CALLS:
        assert as_lists(ours(PAIRS, **kw)) == as_lists(ref(PAIRS, **kw)), kw
    assert ours.model_input_names == ref.model_input_names
    assert ("token_type_ids" in ours.model_input_names) == name.startswith("deberta")
    for key in ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token"):
        assert (getattr(ours, key), getattr(ours, key + "_id")) == (str(getattr(ref, key)), getattr(ref, key + "_id"))
    assert len(ours) == len(ref) and ours.get_vocab() == ref.get_vocab()
    for text in texts:
        ids = ref(text, "and a second text")["input_ids"]
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), text


def test_the_options_change_the_tokens(folders):
    """do_lower_case and split_by_punct reach the converted tokenizer, so the equality above tests them."""
    plain, lower = (minibert.AutoTokenizer.from_pretrained(folders[n]) for n in ("deberta-v3", "deberta-lower-punct"))
    text = "UPPER, lower; Punct!?"
    assert plain.tokenize(text) != lower.tokenize(text) and lower.tokenize(text) == lower.tokenize(text.lower())


def test_a_file_that_is_not_a_sentencepiece_model(tmp_path):
    (tmp_path / "spm.model").write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + b"not a model")
    with pytest.raises(TokenizerError, match=re.escape(str(tmp_path / "spm.model")) + r" is not a SentencePiece model"):
        minibert.AutoTokenizer.from_pretrained(tmp_path)


def test_a_sentencepiece_tokenizer_without_a_converter(folders, tmp_path):
    """ALBERT's and T5's conversions differ (other normalizers and templates): refused, not guessed."""
    with open(os.path.join(folders["deberta-bare"], "spm.model"), "rb") as f:
        (tmp_path / "spm.model").write_bytes(f.read())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "AlbertTokenizer"}))
    with pytest.raises(TokenizerError, match=r"spm.model: no SentencePiece conversion for tokenizer_class "
                                             r"'AlbertTokenizer'") as e:
        minibert.AutoTokenizer.from_pretrained(tmp_path)
    assert "\n" not in str(e.value)
