"""RoBERTa's byte-level BPE and XLM-R's SentencePiece Unigram against transformers' fast tokenizers.

The tokenizers are trained here, offline, by the `tokenizers` library on SST-2 (a few thousand tokens of
vocabulary), wrapped as transformers' `RobertaTokenizerFast` / `XLMRobertaTokenizerFast` and saved by
transformers next to random-weight models that transformers writes. Every expected value comes from
transformers (its AutoTokenizer, its models, its pipelines) on the same folder.
"""
import functools
import json
import os
import re
import shutil
import warnings

import numpy as np
import pytest

import minibert
from minibert import pipeline
from reference import assert_same, make_checkpoint, minilm_dir, sst2_train_texts

POSITIONS = 42  # RoBERTa/XLM-R take 42 - pad_token_id - 1 = 40 tokens
TINY = dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2,
            max_position_embeddings=POSITIONS)
SPECIALS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

# Accents, CJK (some characters never seen in training: unknown to the Unigram model), emoji, spaces
# at both ends and inside, a mask token inside a text, an empty text, contractions split as SST-2 has them.
TEXTS = ["I've been waiting for a HuggingFace course my whole life.", "  leading and trailing spaces  ",
         "Café naïve résumé, crème brûlée à Zürich.", "東京 and 北京 are big cities, 漢字 too",
         "emoji 🙂🎉 here", "the movie is <mask> , really", "", "it 's not that it does n't work .",
         "tabs\tand  double  spaces"]
PAIRS = [("Who flew to Zürich?", "Zoë flew from São Paulo to Zürich, then took the train to 東京 🙂."),
         ("short", "a second text that is clearly longer than the first one, by many words"),
         ("a first text that is clearly longer than the second one, by many words", "short")]
CALLS = [dict(), dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_token_type_ids=True),
         dict(padding=True), dict(padding="max_length", max_length=24, truncation=True),
         dict(truncation=True, max_length=14, return_overflowing_tokens=True, stride=3)]
PAIR_CALLS = CALLS[:4] + [dict(truncation="longest_first", max_length=14),
                          dict(truncation="longest_first", max_length=20, padding=True, return_offsets_mapping=True)]
# (strategy, max_length, the pairs it can cut to that length: the other side must fit)
ONE_SIDE = [("only_second", 24, PAIRS[:2]), ("only_first", 12, PAIRS[2:])]


# -- reference folders ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def corpus():
    lines = sst2_train_texts(3000)
    return lines + [line.title() for line in lines[:500]] + TEXTS[2:5] * 5


def train_sentencepiece(path, **options):
    """A SentencePiece model trained on the corpus, written to `path` (sentencepiece is a test-only dependency)."""
    import io

    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(corpus()), model_writer=out, vocab_size=2000,
                                             minloglevel=2, **options)
    with open(path, "wb") as f:
        f.write(out.getvalue())
    return str(path)


# deberta-v3's spm.model: [PAD] [CLS] [SEP] [UNK] first ([MASK] is added by the tokenizer class)
DEBERTA_SPM = dict(model_type="unigram", pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]", eos_id=2,
                   eos_piece="[SEP]", unk_id=3, unk_piece="[UNK]")


@pytest.fixture(scope="module")
def bpe():
    """A byte-level BPE as RoBERTa's: <s> <pad> </s> <unk> <mask> first, RobertaProcessing (</s></s> in pairs)."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(corpus(), vocab_size=1500, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                            show_progress=False)
    tok._tokenizer.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    return tok._tokenizer


@pytest.fixture(scope="module")
def unigram():
    """A SentencePiece Unigram as XLM-R's: Metaspace, <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last."""
    from tokenizers import AddedToken, SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing

    tok = SentencePieceUnigramTokenizer()
    tok.train_from_iterator(corpus(), vocab_size=2000, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                            unk_token="<unk>", show_progress=False)
    t = tok._tokenizer
    t.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    # transformers' XLMRobertaConverter writes this template
    t.post_processor = TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                          special_tokens=[("<s>", 0), ("</s>", 2)])
    return t


@pytest.fixture(scope="module")
def modernbert_bpe():
    """A byte-level BPE as ModernBERT's: NFC, ByteLevel with no prefix space, [UNK] [CLS] [SEP] [PAD] [MASK]
    after the vocabulary (<mask> strips the space before it), [CLS] A [SEP] B [SEP] by a template."""
    from tokenizers import AddedToken, ByteLevelBPETokenizer, normalizers
    from tokenizers.processors import TemplateProcessing

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(corpus(), vocab_size=1500, special_tokens=["<|endoftext|>"], show_progress=False)
    t = tok._tokenizer
    t.normalizer = normalizers.NFC()
    t.add_special_tokens([AddedToken(s, special=True) for s in ("[UNK]", "[CLS]", "[SEP]", "[PAD]")]
                         + [AddedToken("[MASK]", lstrip=True, special=True)])
    t.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[
        ("[CLS]", t.token_to_id("[CLS]")), ("[SEP]", t.token_to_id("[SEP]"))])
    return t


def modernbert_tokenizer_folder(folder, tok, **kwargs) -> str:
    """Saved as ModernBERT's Hub folders are: PreTrainedTokenizerFast naming its tokens, no token types."""
    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                            pad_token="[PAD]", mask_token="[MASK]", model_input_names=["input_ids", "attention_mask"],
                            clean_up_tokenization_spaces=True, **kwargs).save_pretrained(folder)
    return str(folder)


def modernbert_ids(tokenizer_dir) -> dict:
    """The config's special ids, from the tokenizer (ModernBERT's defaults are its 50k vocabulary's)."""
    tok = minibert.AutoTokenizer.from_pretrained(tokenizer_dir)
    return dict(pad_token_id=tok.pad_token_id, cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id,
                bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)


def model_folder(tmp_path_factory, name, family, head, tokenizer_dir, seed=0, **config):
    """A transformers checkpoint of `family` whose vocabulary is the tokenizer's, the tokenizer's files beside it."""
    folder = tmp_path_factory.mktemp(name)
    n = len(minibert.AutoTokenizer.from_pretrained(tokenizer_dir))
    make_checkpoint(folder, family, head, seed=seed, **{"vocab_size": n, **TINY, **config})
    for file in os.listdir(tokenizer_dir):
        shutil.copy(os.path.join(tokenizer_dir, file), folder)
    return str(folder)


def edit_config(folder, drop=(), **values):
    """Rewrite the folder's tokenizer_config.json without the keys in `drop` and with `values`."""
    path = os.path.join(folder, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg = {k: v for k, v in cfg.items() if k not in drop}
    with open(path, "w", encoding="utf-8") as f:
        json.dump({**cfg, **values}, f)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory, bpe, unigram):
    """name -> checkpoint folder: RoBERTa and XLM-R classifiers and an XLM-R masked LM, and variants of their
    tokenizer files (add_prefix_space stated only in tokenizer_config.json; no special tokens written)."""
    from transformers import RobertaTokenizerFast, XLMRobertaTokenizerFast

    # No model_max_length: the limit must come from the model's config.
    rob_tok, xlmr_tok = tmp_path_factory.mktemp("roberta_tok"), tmp_path_factory.mktemp("xlmr_tok")
    RobertaTokenizerFast(tokenizer_object=bpe).save_pretrained(rob_tok)
    XLMRobertaTokenizerFast(tokenizer_object=unigram).save_pretrained(xlmr_tok)
    for d in (rob_tok, xlmr_tok):  # transformers writes int(1e30): "no limit"
        edit_config(str(d), drop=["model_max_length"])
    labels = dict(id2label={0: "neg", 1: "neutral", 2: "pos"}, label2id={"neg": 0, "neutral": 1, "pos": 2})
    out = {
        "roberta": model_folder(tmp_path_factory, "roberta", "roberta", "sequence-classification", rob_tok, 1, **labels),
        "xlm-roberta": model_folder(tmp_path_factory, "xlmr", "xlm-roberta", "sequence-classification", xlmr_tok, 2,
                                    **labels),
        "xlm-roberta-mlm": model_folder(tmp_path_factory, "xlmr_mlm", "xlm-roberta", "masked-lm", xlmr_tok, 3),
    }
    # tokenizer.json says no prefix space; the folder's tokenizer_config.json says yes (and no offset trimming):
    # transformers rewrites the pre-tokenizer and post-processor by the config.
    out["roberta-prefix-space"] = edit_config(
        model_folder(tmp_path_factory, "roberta_ps", "roberta", "model", rob_tok, 4), add_prefix_space=True,
        trim_offsets=False)
    # Nothing names the special tokens or clean-up: the tokenizer class's defaults (<s>, </s>, ...) apply.
    bare = ["added_tokens_decoder", "clean_up_tokenization_spaces", *SPECIALS]
    for name, source in (("roberta-bare", "roberta"), ("xlm-roberta-bare", "xlm-roberta")):
        folder = str(tmp_path_factory.mktemp(name))
        for file in os.listdir(out[source]):
            if file != "special_tokens_map.json":
                shutil.copy(os.path.join(out[source], file), folder)
        out[name] = edit_config(folder, drop=bare)
    # An older RoBERTa folder: vocab.json + merges.txt and no tokenizer.json (transformers converts them).
    folder = str(tmp_path_factory.mktemp("roberta_files"))
    for file in os.listdir(out["roberta"]):
        if file != "tokenizer.json":
            shutil.copy(os.path.join(out["roberta"], file), folder)
    out["roberta-vocab-merges"] = folder
    return out


@functools.lru_cache(maxsize=None)
def tokenizers(folder):
    import transformers

    return minibert.AutoTokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


def as_lists(enc) -> dict:
    """A BatchEncoding as plain JSON values (offsets as lists, not tuples), to compare whole."""
    return json.loads(json.dumps(dict(enc)))


TOKENIZER_CASES = ["roberta", "xlm-roberta", "roberta-prefix-space", "roberta-bare", "xlm-roberta-bare",
                   "roberta-vocab-merges"]


# -- the tokenizers ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TOKENIZER_CASES)
def test_encodings_equal_transformers(folders, name):
    ours, ref = tokenizers(folders[name])
    assert type(ref).__name__ == ("XLMRobertaTokenizerFast" if "xlm" in name else "RobertaTokenizerFast")
    for kw in CALLS:
        assert as_lists(ours(TEXTS, **kw)) == as_lists(ref(TEXTS, **kw)), kw
    for kw in PAIR_CALLS:
        assert as_lists(ours(PAIRS, **kw)) == as_lists(ref(PAIRS, **kw)), kw
        firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
        assert as_lists(ours(firsts, seconds, **kw)) == as_lists(ref(firsts, seconds, **kw)), kw
    for strategy, limit, pairs in ONE_SIDE:
        kw = dict(truncation=strategy, max_length=limit, return_offsets_mapping=True)
        assert as_lists(ours(pairs, **kw)) == as_lists(ref(pairs, **kw)), kw
        with pytest.raises(Exception):  # the side it may not cut is too long: both refuse
            ref([p for p in PAIRS if p not in pairs], **kw)
        with pytest.raises(ValueError, match="Sequence to truncate too short"):
            ours([p for p in PAIRS if p not in pairs], **kw)
    for text in TEXTS:  # one text: no batch axis
        assert dict(ours(text)) == dict(ref(text))
    # RoBERTa pairs are <s> A </s></s> B </s>; neither family has token types
    enc = ours(*PAIRS[1])
    sep = ours.sep_token_id
    assert enc["input_ids"][0] == ours.cls_token_id and enc["input_ids"][-1] == sep
    assert [a == b == sep for a, b in zip(enc["input_ids"], enc["input_ids"][1:])].count(True) == 1
    assert "token_type_ids" not in enc and ours.model_input_names == ref.model_input_names


@pytest.mark.parametrize("name", TOKENIZER_CASES)
def test_vocabulary_tools_equal_transformers(folders, name):
    ours, ref = tokenizers(folders[name])
    for key in SPECIALS:
        assert getattr(ours, key) == str(getattr(ref, key)), key
        assert getattr(ours, key + "_id") == getattr(ref, key + "_id"), key
    assert ours.all_special_tokens == ref.all_special_tokens and ours.all_special_ids == ref.all_special_ids
    assert len(ours) == len(ref) and ours.vocab_size == ref.vocab_size and ours.get_vocab() == ref.get_vocab()
    assert ours.clean_up_tokenization_spaces == ref.clean_up_tokenization_spaces
    for pair in (False, True):
        assert ours.num_special_tokens_to_add(pair) == ref.num_special_tokens_to_add(pair)
    for text in TEXTS:
        tokens = ref.tokenize(text)
        assert ours.tokenize(text) == tokens, text
        extra = ["<mask>", "<s>", "</s>", "[CLS]", "not-a-token-at-all"]  # the last two: the unknown id
        assert ours.convert_tokens_to_ids(tokens + extra) == ref.convert_tokens_to_ids(tokens + extra)
        assert ours.convert_tokens_to_string(tokens) == ref.convert_tokens_to_string(tokens), text
        for ids in (ref(text)["input_ids"], ref(text, *PAIRS[0])["input_ids"]):
            assert ours.convert_ids_to_tokens(ids) == ref.convert_ids_to_tokens(ids)
            for skip in (False, True):
                assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), text
                assert ours.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=True) == \
                    ref.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=True), text
    batch = ref(TEXTS, padding=True)["input_ids"]
    assert ours.batch_decode(batch, skip_special_tokens=True) == ref.batch_decode(batch, skip_special_tokens=True)


def test_the_folder_decides_prefix_space(folders):
    """The variants differ from the plain folder where transformers says they do, so the cases above test something."""
    plain, _ = tokenizers(folders["roberta"])
    spaced, ref = tokenizers(folders["roberta-prefix-space"])
    assert ref.add_prefix_space and plain.tokenize("Hello world") != spaced.tokenize("Hello world")
    assert plain("  hi ", return_offsets_mapping=True)["offset_mapping"] != \
        spaced("  hi ", return_offsets_mapping=True)["offset_mapping"]


def test_length_limit_is_the_models(folders):
    """No model_max_length written: the limit is what the model takes, max_position_embeddings less
    RoBERTa's padding offset (transformers itself has no limit then: its 1e30)."""
    from transformers import AutoConfig

    for name in ("roberta", "xlm-roberta"):
        ours, ref = tokenizers(folders[name])
        cfg = AutoConfig.from_pretrained(folders[name])
        usable = cfg.max_position_embeddings - cfg.pad_token_id - 1
        assert ours.model_max_length == usable == 40 and ref.model_max_length > 1e29
        long = " ".join(TEXTS) * 3
        assert ours(long, truncation=True)["input_ids"] == ref(long, truncation=True, max_length=usable)["input_ids"]


def test_modernbert_tokenizer_equals_transformers(tmp_path_factory, modernbert_bpe):
    """ModernBERT's kind of folder (a BPE named only by tokenizer.json, PreTrainedTokenizerFast, [CLS] A [SEP] B
    [SEP]): ids, masks, offsets, overflow, special tokens and decoding equal transformers'."""
    folder = modernbert_tokenizer_folder(tmp_path_factory.mktemp("modernbert_tok"), modernbert_bpe,
                                         model_max_length=8192)
    ours, ref = tokenizers(folder)
    assert type(ref).__name__ == "PreTrainedTokenizerFast"
    for kw in CALLS:
        assert as_lists(ours(TEXTS, **kw)) == as_lists(ref(TEXTS, **kw)), kw
    for kw in PAIR_CALLS:
        assert as_lists(ours(PAIRS, **kw)) == as_lists(ref(PAIRS, **kw)), kw
    for text in TEXTS + ["the movie is [MASK] , really"]:
        assert dict(ours(text)) == dict(ref(text))
        ids = ref(text, "Zoë 🙂")["input_ids"]
        assert ours.convert_ids_to_tokens(ids) == ref.convert_ids_to_tokens(ids)
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), text
    for key in SPECIALS:
        assert getattr(ours, key) == (None if getattr(ref, key) is None else str(getattr(ref, key))), key
    assert ours.all_special_ids == ref.all_special_ids and len(ours) == len(ref) == 1505
    assert ours.clean_up_tokenization_spaces == ref.clean_up_tokenization_spaces and ours.model_max_length == 8192
    enc = ours(*PAIRS[1])
    assert enc["input_ids"][0] == ours.cls_token_id and enc["input_ids"].count(ours.sep_token_id) == 2
    assert "token_type_ids" not in enc and ours.model_input_names == ref.model_input_names


# -- tokenizer + model, end to end ---------------------------------------------------------------
@pytest.fixture(scope="module")
def electra_tokenizer(tmp_path_factory):
    """A WordPiece tokenizer (the MiniLM uncased vocabulary) saved as ELECTRA's, with no model_max_length."""
    from transformers import ElectraTokenizerFast

    tok_dir = str(tmp_path_factory.mktemp("electra_tok"))
    ElectraTokenizerFast.from_pretrained(minilm_dir()).save_pretrained(tok_dir)
    return edit_config(tok_dir, drop=["model_max_length"])


@pytest.fixture(scope="module")
def electra_folder(tmp_path_factory, electra_tokenizer):
    """An ELECTRA classifier with the WordPiece tokenizer above."""
    return model_folder(tmp_path_factory, "electra", "electra", "sequence-classification", electra_tokenizer, 5,
                        embedding_size=16, num_labels=3)


@pytest.mark.parametrize("name", ["roberta", "xlm-roberta", "electra"])
def test_tokenizer_and_model_equal_transformers(folders, electra_folder, name):
    """Texts of different lengths, padded to the longest: same ids, same logits at 1e-5."""
    import torch
    import transformers

    folder = electra_folder if name == "electra" else folders[name]
    tok = minibert.AutoTokenizer.from_pretrained(folder)
    ref_tok = transformers.AutoTokenizer.from_pretrained(folder)
    texts = [t for t in TEXTS if t] + [a for a, _ in PAIRS]
    enc = tok(texts, padding=True, truncation=True, return_tensors="tf")
    ref_enc = ref_tok(texts, padding=True, truncation=True, max_length=tok.model_max_length, return_tensors="pt")
    assert sorted(enc) == sorted(ref_enc) and ("token_type_ids" in enc) == (name == "electra")
    for k in enc:
        np.testing.assert_array_equal(enc[k].numpy(), ref_enc[k].numpy())
    assert (enc["attention_mask"].numpy() == 0).any()  # a padded batch
    logits = minibert.TFAutoModelForSequenceClassification.from_pretrained(folder)(enc).logits.numpy()
    ref_model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager")
    with torch.no_grad():
        want = ref_model.eval()(**ref_enc).logits.numpy()
    assert np.abs(logits - want).max() <= 1e-5


def test_xlm_roberta_pipelines_equal_transformers(folders):
    import transformers

    masked = ["the movie is <mask> , really", "Café <mask> à Zürich.", "<mask> 東京 🙂"]
    folder = folders["xlm-roberta-mlm"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = transformers.pipeline("fill-mask", model=folder, tokenizer=folder)
        assert_same(pipeline("fill-mask", model=folder)(masked, top_k=4), ref(masked, top_k=4))
        folder = folders["xlm-roberta"]
        ref = transformers.pipeline("text-classification", model=folder, tokenizer=folder)
        texts = [t for t in TEXTS if t]
        assert_same(pipeline("text-classification", model=folder)(texts, top_k=None), ref(texts, top_k=None))


# -- a model and a tokenizer that do not belong together -----------------------------------------
def test_tokenizer_of_another_family_is_refused(tmp_path_factory, folders):
    """A RoBERTa checkpoint with BERT's WordPiece ([CLS], [PAD] = 0), and a BERT checkpoint with RoBERTa's BPE."""
    folder = str(tmp_path_factory.mktemp("roberta_wordpiece"))
    where = re.escape(folder)
    make_checkpoint(folder, "roberta", "sequence-classification", vocab_size=30522, **TINY)
    for file in ("tokenizer.json", "vocab.txt", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(minilm_dir(), file), folder)
    with pytest.raises(ValueError, match=rf"{where}/config\.json.*'roberta'.*pad_token_id=1.*"
                                         rf"{where}/tokenizer\.json.*WordPiece.*'\[CLS\]'.*another family"):
        pipeline("text-classification", model=folder)

    folder = str(tmp_path_factory.mktemp("bert_bpe"))
    where = re.escape(folder)
    make_checkpoint(folder, "bert", "sequence-classification", vocab_size=1500, **TINY)
    source = folders["roberta"]
    for file in os.listdir(source):
        if not file.startswith(("config", "model")):
            shutil.copy(os.path.join(source, file), folder)
    with pytest.raises(ValueError, match=rf"{where}/config\.json.*'bert'.*\[CLS\]-first.*"
                                         rf"{where}/tokenizer\.json.*BPE.*'<s>'"):
        pipeline("text-classification", model=folder)


def test_vocabulary_larger_than_the_model_is_refused(tmp_path_factory, folders):
    """XLM-R's tokenizer has 2001 tokens (<mask> added last); a model with 2000 rows cannot embed <mask>."""
    folder = str(tmp_path_factory.mktemp("xlmr_short_vocab"))
    where = re.escape(folder)
    make_checkpoint(folder, "xlm-roberta", "masked-lm", vocab_size=2000, **TINY)
    for file in os.listdir(folders["xlm-roberta"]):
        if not file.startswith(("config", "model")):
            shutil.copy(os.path.join(folders["xlm-roberta"], file), folder)
    with pytest.raises(ValueError, match=rf"{where}/tokenizer\.json\) has 2001 tokens.*{where}/config\.json\).*"
                                         r"vocab_size=2000: id 2000 has no embedding"):
        pipeline("fill-mask", model=folder)


# -- every pipeline task on every family's own tokenizer -----------------------------------------
NLI = dict(id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
           label2id={"contradiction": 0, "neutral": 1, "entailment": 2})
NER = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
# deberta-v3's settings, its 256 position buckets scaled down to 8
DEBERTA_V3 = dict(relative_attention=True, position_buckets=8, share_att_key=True, norm_rel_ebd="layer_norm",
                  position_biased_input=False, pos_att_type=["p2c", "c2p"], type_vocab_size=0, layer_norm_eps=1e-7)
CONTEXT = " ".join(TEXTS[:5] + [b for _, b in PAIRS]) * 2  # far beyond 40 tokens: read in windows
QUESTIONS = ["Who flew to Zürich?", "Where is 東京?", "What is naïve?"]


@pytest.fixture(scope="module")
def task_tokenizers(tmp_path_factory, bpe, unigram, electra_tokenizer, modernbert_bpe):
    """family -> a tokenizer folder limited to 40 tokens (without a limit transformers' pipelines would run
    past the tiny models' position tables), saved by transformers."""
    from transformers import DebertaV2TokenizerFast, RobertaTokenizerFast, XLMRobertaTokenizerFast

    out = {}
    folder = str(tmp_path_factory.mktemp("deberta_task_tok"))  # tokenizer.json (and spm.model), as deberta-v3 ships
    spm_model = train_sentencepiece(tmp_path_factory.mktemp("deberta_spm") / "spm.model", **DEBERTA_SPM)
    DebertaV2TokenizerFast(vocab_file=spm_model, model_max_length=POSITIONS - 2).save_pretrained(folder)
    out["deberta-v2"] = folder
    for family, cls, tok in (("roberta", RobertaTokenizerFast, bpe), ("xlm-roberta", XLMRobertaTokenizerFast, unigram)):
        folder = str(tmp_path_factory.mktemp(f"{family}_task_tok"))
        cls(tokenizer_object=tok, model_max_length=POSITIONS - 2).save_pretrained(folder)
        out[family] = folder
    folder = str(tmp_path_factory.mktemp("electra_task_tok"))
    for file in os.listdir(electra_tokenizer):
        shutil.copy(os.path.join(electra_tokenizer, file), folder)
    out["electra"] = edit_config(folder, model_max_length=POSITIONS - 2)
    out["modernbert"] = modernbert_tokenizer_folder(tmp_path_factory.mktemp("modernbert_task_tok"), modernbert_bpe,
                                                    model_max_length=POSITIONS - 2)
    return out


TASK_HEADS = {"text-classification": ("sequence-classification", NLI), "zero-shot-classification":
              ("sequence-classification", NLI), "token-classification": ("token-classification", dict(
                  id2label=dict(enumerate(NER)), label2id={n: i for i, n in enumerate(NER)})),
              "question-answering": ("question-answering", {}), "fill-mask": ("masked-lm", {}),
              "feature-extraction": ("model", {})}


# ModernBERT's longer-running tasks (the windows of long contexts, 40 tokens each) are in the slow suite.
# DeBERTa's question answering is the slowest of its tasks. The span and word tasks (question answering,
# entities, zero-shot) read offsets the way RoBERTa's byte-level BPE gives them in the default suite; on
# XLM-R's Unigram and ELECTRA's WordPiece, whose offsets the encoding tests above compare, in the slow one.
SLOW_TASKS = {("modernbert", t) for t in ("question-answering", "feature-extraction", "zero-shot-classification",
                                          "token-classification")} | {("deberta-v2", "question-answering")} | \
    {(f, t) for f in ("xlm-roberta", "electra")
     for t in ("question-answering", "token-classification", "zero-shot-classification")}
# DeBERTa through the tasks whose code paths its tokenizer and heads change (feature extraction and single-text
# classification read the same encoder and pooler the model tests cover).
FAMILY_TASKS = [(f, t) for f in ("roberta", "xlm-roberta", "electra", "modernbert") for t in sorted(TASK_HEADS)] + \
    [("deberta-v2", t) for t in ("fill-mask", "question-answering", "token-classification", "zero-shot-classification")]


@pytest.mark.parametrize("family,task", [
    pytest.param(f, t, marks=[pytest.mark.slow] if (f, t) in SLOW_TASKS else []) for f, t in FAMILY_TASKS])
def test_every_task_equals_transformers_pipeline(tmp_path_factory, task_tokenizers, family, task):
    """minibert's pipeline and transformers 4.57's on the same folder: a byte-level BPE (RoBERTa), a Unigram
    (XLM-R), ELECTRA's WordPiece and deberta-v3's SentencePiece with [CLS]/[SEP] and token types, each with
    every task's head; accents, CJK, emoji, pairs, long inputs."""
    import transformers

    head, config = TASK_HEADS[task]
    # Weights 10x the default scale: the scores of a random model then depend on the text enough that the
    # ranks of labels and answers are not near-ties decided by float rounding.
    extra = dict(initializer_range=0.2, **(dict(embedding_size=16) if family == "electra" else {}),
                 **(DEBERTA_V3 if family == "deberta-v2" else {}))
    if family == "modernbert":  # layer 1 sees 4 tokens each side: 40-token windows run it banded
        extra.update(modernbert_ids(task_tokenizers[family]), local_attention=8, global_attn_every_n_layers=2)
    folder = model_folder(tmp_path_factory, f"{family}_{head}", family, head, task_tokenizers[family],
                          seed=sorted(TASK_HEADS).index(task), **config, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # long inputs truncated, transformers' heuristics for BPE words
        ref, pipe = transformers.pipeline(task, model=folder, tokenizer=folder), pipeline(task, model=folder)
        texts = [t for t in TEXTS if t]
        if task == "text-classification":
            pairs = [{"text": a, "text_pair": b} for a, b in PAIRS]
            for inputs in (texts, pairs):
                assert_same(pipe(inputs, top_k=None), ref(inputs, top_k=None, truncation=True))
        elif task == "zero-shot-classification":
            kw = dict(candidate_labels=["cinéma", "travel", "東京"], multi_label=True)
            assert_same(pipe(texts + [CONTEXT], **kw), ref(texts + [CONTEXT], **kw))
        elif task == "token-classification":
            for kw in (dict(aggregation_strategy="none"), dict(aggregation_strategy="simple", stride=6),
                       dict(aggregation_strategy="first"), dict(aggregation_strategy="max", ignore_labels=[])):
                assert_same(pipe(texts + [CONTEXT], **kw), ref(texts + [CONTEXT], **kw))
        elif task == "question-answering":
            for kw in (dict(top_k=2), dict(handle_impossible_answer=True, doc_stride=8)):
                assert_same(pipe(question=QUESTIONS, context=CONTEXT, **kw),
                            ref(question=QUESTIONS, context=CONTEXT, **kw))
        elif task == "fill-mask":
            mask = pipe.tokenizer.mask_token
            masked = [t.replace("<mask>", mask) for t in ("the movie is <mask> , really", "Café <mask> à Zürich.",
                                                           "<mask> 東京 🙂", "<mask> and <mask> too")]
            assert_same(pipe(masked, top_k=3), ref(masked, top_k=3))
        else:
            want, got = ref(texts, truncation=True), pipe(texts)
            assert [np.asarray(g).shape for g in got] == [np.asarray(w).shape for w in want]
            assert max(np.abs(np.asarray(g) - np.asarray(w)).max() for g, w in zip(got, want)) <= 1e-4
