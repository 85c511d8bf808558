"""MPNet's WordPiece (<s> A </s></s> B </s>, lower-casing, [UNK]) and CamemBERT's SentencePiece Unigram against
transformers' fast tokenizers, and both families end to end: tokenizer + model, and every pipeline task.

The MPNet tokenizer is the MiniLM uncased vocabulary laid out as MPNet's (<s> <pad> </s> <unk> first, <mask>
last: 30527 tokens, all-mpnet-base-v2's size) and saved by transformers' `MPNetTokenizerFast`; CamemBERT's is a
Unigram trained here on SST-2 with CamemBERT's special tokens, saved by `CamembertTokenizerFast`. Every expected
value comes from transformers on the same folder.
"""
import functools
import os
import shutil

import numpy as np
import pytest

import minibert
from reference import make_checkpoint, minilm_dir
from test_family_tokenizers import (CALLS, ONE_SIDE, PAIR_CALLS, PAIRS, POSITIONS, SPECIALS, TASK_HEADS, TEXTS, TINY,
                                    as_lists, corpus, edit_config)
# the other families' every-task comparison, run here on MPNet's and CamemBERT's folders (an alias pytest does not collect)
from test_family_tokenizers import test_every_task_equals_transformers_pipeline as run_task_comparison

# the texts again, upper-cased and with MPNet's specials written inside (matched whole, never lower-cased)
MORE_TEXTS = ["HELLO <s> World </s> and [UNK] or [CLS]", "the MOVIE is <mask>, REALLY <pad>"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """name -> a folder with a tokenizer (and, for some, a model): MPNet's as transformers saves it, without the
    special tokens and clean-up named, and as a bare vocab.txt; CamemBERT's tokenizer.json."""
    from tokenizers import AddedToken, SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import CamembertTokenizerFast, MPNetTokenizerFast

    out = {}
    words = open(os.path.join(minilm_dir(), "vocab.txt"), encoding="utf-8").read().splitlines()
    src = tmp_path_factory.mktemp("mpnet_vocab")
    with open(src / "vocab.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(["<s>", "<pad>", "</s>", "<unk>", *words, "<mask>"]) + "\n")
    folder = str(tmp_path_factory.mktemp("mpnet_tok"))
    MPNetTokenizerFast(str(src / "vocab.txt")).save_pretrained(folder)
    out["mpnet"] = edit_config(folder, drop=["model_max_length"])  # the limit must come from the model's config
    make_checkpoint(folder, "mpnet", "sequence-classification", seed=7, num_labels=3, vocab_size=len(words) + 5, **TINY)

    bare = str(tmp_path_factory.mktemp("mpnet_bare"))
    for file in os.listdir(folder):
        if file != "special_tokens_map.json":
            shutil.copy(os.path.join(folder, file), bare)
    out["mpnet-bare"] = edit_config(bare, drop=["added_tokens_decoder", "clean_up_tokenization_spaces", *SPECIALS])
    vocab_only = str(tmp_path_factory.mktemp("mpnet_vocab_only"))
    for file in ("vocab.txt", "tokenizer_config.json", "config.json"):
        shutil.copy(os.path.join(folder, file), vocab_only)
    out["mpnet-vocab"] = vocab_only

    # CamemBERT's layout: <s>NOTUSED <pad> </s>NOTUSED <unk> <unk>NOTUSED, then the pieces (with <s> </s>), <mask> last.
    tok = SentencePieceUnigramTokenizer()
    specials = ["<s>NOTUSED", "<pad>", "</s>NOTUSED", "<unk>", "<unk>NOTUSED", "<s>", "</s>"]
    tok.train_from_iterator(corpus(), vocab_size=2000, special_tokens=specials, unk_token="<unk>", show_progress=False)
    t = tok._tokenizer
    t.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    t.post_processor = TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",  # CamembertConverter's
                                          special_tokens=[("<s>", 5), ("</s>", 6)])
    folder = str(tmp_path_factory.mktemp("camembert_tok"))
    CamembertTokenizerFast(tokenizer_object=t).save_pretrained(folder)
    out["camembert"] = edit_config(folder, drop=["model_max_length"])
    make_checkpoint(folder, "camembert", "sequence-classification", seed=8, num_labels=3, vocab_size=len(t.get_vocab()),
                    type_vocab_size=1, layer_norm_eps=1e-5, **TINY)
    return out


@functools.lru_cache(maxsize=None)
def tokenizers(folder):
    import transformers

    return minibert.AutoTokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


CASES = ["mpnet", "mpnet-bare", "mpnet-vocab", "camembert"]


@pytest.mark.parametrize("name", CASES)
def test_encodings_equal_transformers(folders, name):
    ours, ref = tokenizers(folders[name])
    assert type(ref).__name__ == ("CamembertTokenizerFast" if name == "camembert" else "MPNetTokenizerFast")
    texts = TEXTS + MORE_TEXTS
    for kw in CALLS:
        assert as_lists(ours(texts, **kw)) == as_lists(ref(texts, **kw)), kw
    for kw in PAIR_CALLS:
        assert as_lists(ours(PAIRS, **kw)) == as_lists(ref(PAIRS, **kw)), kw
    for strategy, limit, pairs in ONE_SIDE:
        kw = dict(truncation=strategy, max_length=limit, return_offsets_mapping=True)
        assert as_lists(ours(pairs, **kw)) == as_lists(ref(pairs, **kw)), kw
    for text in texts:  # one text: no batch axis
        assert dict(ours(text)) == dict(ref(text))
    # <s> A </s></s> B </s>, no token types
    enc = ours(*PAIRS[1])
    sep = ours.sep_token_id
    assert enc["input_ids"][0] == ours.cls_token_id and enc["input_ids"][-1] == sep
    assert [a == b == sep for a, b in zip(enc["input_ids"], enc["input_ids"][1:])].count(True) == 1
    assert "token_type_ids" not in enc and ours.model_input_names == ref.model_input_names == ["input_ids",
                                                                                              "attention_mask"]


@pytest.mark.parametrize("name", CASES)
def test_vocabulary_tools_equal_transformers(folders, name):
    ours, ref = tokenizers(folders[name])
    for key in SPECIALS:
        assert getattr(ours, key) == str(getattr(ref, key)), key
        assert getattr(ours, key + "_id") == getattr(ref, key + "_id"), key
    assert ours.all_special_tokens == ref.all_special_tokens and ours.all_special_ids == ref.all_special_ids
    assert len(ours) == len(ref) and ours.get_vocab() == ref.get_vocab()
    assert ours.clean_up_tokenization_spaces == ref.clean_up_tokenization_spaces
    for pair in (False, True):
        assert ours.num_special_tokens_to_add(pair) == ref.num_special_tokens_to_add(pair)
    for text in TEXTS + MORE_TEXTS:
        tokens = ref.tokenize(text)
        assert ours.tokenize(text) == tokens, text
        assert ours.convert_tokens_to_string(tokens) == ref.convert_tokens_to_string(tokens), text
        for ids in (ref(text)["input_ids"], ref(text, *PAIRS[0])["input_ids"]):
            assert ours.convert_ids_to_tokens(ids) == ref.convert_ids_to_tokens(ids)
            for skip in (False, True):
                assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), text
                assert ours.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=True) == \
                    ref.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=True), text


def test_mpnet_conventions(folders):
    """What makes MPNet's tokenizer its own: lower-cased WordPiece, [UNK] for the unknown, pads of id 1 (its
    positions count from there), 512 - 2 = 510 tokens at most with no model_max_length written."""
    ours, _ = tokenizers(folders["mpnet"])
    assert (ours.cls_token, ours.sep_token, ours.unk_token, ours.pad_token) == ("<s>", "</s>", "[UNK]", "<pad>")
    assert ours.pad_token_id == 1 and ours.tokenize("HeLLo") == ["hello"]
    assert ours.model_max_length == POSITIONS - 2


@pytest.mark.parametrize("name", ["mpnet", "camembert"])
def test_tokenizer_and_model_equal_transformers(folders, name):
    """Texts of different lengths, padded to the longest: same ids, same logits at 1e-5."""
    import torch
    import transformers

    folder = folders[name]
    tok, ref_tok = tokenizers(folder)
    texts = [t for t in TEXTS if t] + [a for a, _ in PAIRS]
    enc = tok(texts, padding=True, truncation=True, return_tensors="tf")
    ref_enc = ref_tok(texts, padding=True, truncation=True, max_length=tok.model_max_length, return_tensors="pt")
    assert sorted(enc) == sorted(ref_enc) == ["attention_mask", "input_ids"]
    for k in enc:
        np.testing.assert_array_equal(enc[k].numpy(), ref_enc[k].numpy())
    assert (enc["attention_mask"].numpy() == 0).any()  # a padded batch
    model = minibert.AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(model).__name__ == {"mpnet": "MPNetForSequenceClassification",
                                    "camembert": "CamembertForSequenceClassification"}[name]
    ref_model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager")
    with torch.no_grad():
        want = ref_model.eval()(**ref_enc).logits.numpy()
    assert np.abs(model(enc).logits.numpy() - want).max() <= 1e-5


# -- every pipeline task ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def task_tokenizers(tmp_path_factory, folders):
    """family -> its tokenizer folder limited to 40 tokens, as the other families' task tests have them."""
    out = {}
    for family in ("mpnet", "camembert"):
        folder = str(tmp_path_factory.mktemp(f"{family}_task_tok"))
        for file in os.listdir(folders[family]):
            if not file.startswith(("config", "model")):
                shutil.copy(os.path.join(folders[family], file), folder)
        out[family] = edit_config(folder, model_max_length=POSITIONS - 2)
    return out


# CamemBERT runs RoBERTa's pipelines code on its own Unigram: the tasks that read words and masks from it.
# In the fast suite: MPNet's fill-mask (its <mask> takes the space before it) and question answering (pairs
# with </s></s>, offsets, windows); the rest are marked slow (python -m pytest -q -m slow).
FAST_TASKS = {("mpnet", "fill-mask"), ("mpnet", "question-answering")}
TASK_CASES = [("mpnet", task) for task in sorted(TASK_HEADS)] + [("camembert", "fill-mask"),
                                                                  ("camembert", "token-classification")]


@pytest.mark.parametrize("family,task", [case if case in FAST_TASKS else pytest.param(*case, marks=pytest.mark.slow)
                                         for case in TASK_CASES])
def test_every_task_equals_transformers_pipeline(tmp_path_factory, task_tokenizers, family, task):
    """minibert's pipeline and transformers 4.57's on the same folder, as for the other families."""
    run_task_comparison(tmp_path_factory, task_tokenizers, family, task)


def test_trace_of_an_mpnet_classifier(folders):
    """`trace` shows MPNet's stages: no token types, the classifier's own input, the model's logits."""
    from minibert import trace as tr

    folder = folders["mpnet"]
    model, tok = minibert.AutoModelForSequenceClassification.from_pretrained(folder), tokenizers(folder)[0]
    texts = ["Hello world!", "a longer text, padded to the other"]
    r = tr.trace(texts, model, tok)
    assert r["tokens"][0][:4] == ["<s>", "hello", "world", "!"] and "token_type_ids" not in r
    assert r["head_input"]["stage"] == "<s> hidden state -> classifier.dense -> tanh" and r["head_input"]["shape"] == [2, 32]
    assert len(r["stages"]) == 1 + model.config.num_hidden_layers and r["attentions"]["shape"][:2] == [2, 4]
    want = model(tok(texts, padding=True, return_tensors="np")).logits.numpy()
    assert np.abs(np.asarray(r["logits"]) - want).max() <= 1e-4  # rounded for display
    assert "<s> hidden state" in tr.format_trace(r)


@pytest.mark.parametrize("name", ["mpnet", "camembert"])
def test_saved_tokenizer_reloads_in_both(tmp_path, folders, name):
    """minibert's save_pretrained keeps the special tokens, CamemBERT's additional ones included: minibert and
    transformers read the saved folder as they read the original."""
    import transformers

    ours, ref = tokenizers(folders[name])
    ours.save_pretrained(tmp_path)
    shutil.copy(os.path.join(folders[name], "config.json"), tmp_path)  # transformers picks its class by model_type
    again, theirs = minibert.AutoTokenizer.from_pretrained(tmp_path), transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert again.all_special_tokens == theirs.all_special_tokens == ref.all_special_tokens
    texts = TEXTS + MORE_TEXTS
    assert as_lists(again(texts, padding=True)) == as_lists(theirs(texts, padding=True)) == as_lists(ref(texts, padding=True))
