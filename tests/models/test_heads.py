"""Every head of both families against transformers (PyTorch, eager attention) on padded batches,
and what loading and saving a head does: tied weights, the unused/new-weights report, architectures."""
import numpy as np
import pytest

import minibert
from minibert.auto import class_for_architecture
from minibert.auto import FAMILIES
from family_configs import BASE, SMALL, TEST_VOCAB
from reference import FAMILIES as FAMILY_NAMES
from reference import HEADS, TOL, make_checkpoint, max_diffs, reference

IDS = [[101, 5, 17, 42, 88, 9, 33, 102], [101, 7, 3, 102, 0, 0, 0, 0], [101, 60, 102, 0, 0, 0, 0, 0]]
MASK = [[1] * 8, [1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]]
TYPES = [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0]]
# Multiple choice: 2 questions x 3 choices x 8 tokens, padded differently per choice.
MC_IDS = [IDS, [IDS[2], IDS[0], IDS[1]]]
MC_MASK = [MASK, [MASK[2], MASK[0], MASK[1]]]
MC_TYPES = [TYPES, [TYPES[2], TYPES[0], TYPES[1]]]

# Positions counted from the pad id 1: <s> 0 ... </s> 2 rows, padded with 1 on either side.
ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "data2vec-text", "mpnet")
# RoBERTa: <s> 0 ... </s> 2, pads 1; rows padded on the right and on the left (positions depend on it).
RB_IDS = [[0, 5, 17, 42, 88, 9, 33, 2], [0, 7, 3, 2, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 60, 2]]
RB_MASK = [[1] * 8, [1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1, 1]]
AUTO = {"pretraining": minibert.ElectraForPreTraining, "model": minibert.AutoModel, "sequence-classification": minibert.AutoModelForSequenceClassification,
        "multiple-choice": minibert.AutoModelForMultipleChoice,
        "token-classification": minibert.AutoModelForTokenClassification,
        "question-answering": minibert.AutoModelForQuestionAnswering, "masked-lm": minibert.AutoModelForMaskedLM}
OUTPUTS = {"model": ["last_hidden_state"], "sequence-classification": ["logits"], "multiple-choice": ["logits"],
           "token-classification": ["logits"], "question-answering": ["start_logits", "end_logits"],
           "masked-lm": ["logits"], "pretraining": ["logits"]}
# CamemBERT's and data2vec-text's classes are RoBERTa's under other names, made by the one helper that makes
# XLM-R's: a head proves the names here (their masked LMs are in the tied-weights test below, CamemBERT's
# classifier in tests/pipelines/test_mpnet_camembert.py with its own tokenizer).
RENAMED_ONLY = {"camembert": ("model",), "data2vec-text": ("sequence-classification",)}
PAIRS = [(family, head) for family, heads in sorted(FAMILIES.items()) for head in sorted(heads)
         if head in RENAMED_ONLY.get(family, heads)]


def run_both(folder, family, head):
    """(our outputs, transformers' outputs, the mask of real tokens) on the padded test batch."""
    base_ids, base_mask = (RB_IDS, RB_MASK) if family in ROBERTA_LIKE else (IDS, MASK)
    if head == "multiple-choice":
        ids = [base_ids, [base_ids[2], base_ids[0], base_ids[1]]]
        mask = [base_mask, [base_mask[2], base_mask[0], base_mask[1]]]
        types, flat_mask = MC_TYPES, np.asarray(mask).reshape(-1, 8)
    else:
        ids, mask, types, flat_mask = base_ids, base_mask, TYPES, base_mask
    types = types if family in ("bert", "electra", "deberta-v2") else None  # deberta-v3 reads and ignores them
    ref = reference(folder, ids, mask, types, head=head)
    model = AUTO[head].from_pretrained(folder)
    assert type(model).__name__ == FAMILY_NAMES[family] + HEADS[head]
    out = model(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True, output_attentions=True)
    return out, ref, flat_mask


def assert_parity(out, ref, mask, keys):
    diffs = max_diffs(out, ref, mask)
    assert set(keys) | {"hidden_states", "attentions"} <= set(diffs), diffs
    for key, d in diffs.items():
        assert d <= TOL[key], f"{key}: max |diff| {d:.3g} > {TOL[key]:g} ({diffs})"


def masked_rows(x, mask):
    """Per-token outputs at real positions only: padding positions are not compared."""
    return np.asarray(x)[np.asarray(mask).astype(bool)]


# Saving: the default suite saves each family's classifier and masked LM (the tied decoder is what a save can
# get wrong); every other head, whose names the parity table below already proves, is saved in the slow suite.
SAVED_BY_DEFAULT = ("sequence-classification", "masked-lm")


@pytest.mark.parametrize("family,head", [pytest.param(f, h, marks=[] if h in SAVED_BY_DEFAULT else [pytest.mark.slow])
                                         for f, h in PAIRS])
def test_every_head_saves_what_transformers_loads(tmp_path, family, head):
    """save_pretrained of every family x head: transformers' own class loads it with nothing missing,
    unexpected or mismatched, and gives the same outputs."""
    from reference import reference_class

    labels = 2 if head == "question-answering" else 3
    folder = make_checkpoint(tmp_path / "src", family, head, seed=1, **{**TEST_VOCAB, "num_labels": labels,
                                                                         **SMALL[family]})
    AUTO[head].from_pretrained(folder).save_pretrained(tmp_path / "out")
    _, info = reference_class(family, head).from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    out, ref, mask = run_both(str(tmp_path / "out"), family, head)
    per_sequence = head in ("sequence-classification", "multiple-choice")
    for key in OUTPUTS[head]:
        got, want = (getattr(out, key), ref[key]) if per_sequence else \
            (masked_rows(getattr(out, key), mask), masked_rows(ref[key], mask))
        assert np.abs(np.asarray(got) - want).max() <= TOL[key], key


@pytest.mark.parametrize("family,head", PAIRS)
def test_every_head_matches_transformers(tmp_path, family, head):
    labels = 2 if head == "question-answering" else 3  # transformers' QA layer has num_labels (2) outputs
    folder = make_checkpoint(tmp_path, family, head, **{**TEST_VOCAB, "num_labels": labels, **SMALL[family]})
    out, ref, mask = run_both(folder, family, head)
    assert type(out).__name__.removeprefix("TF") in {
        "model": ("BaseModelOutput", "BaseModelOutputWithPooling"), "sequence-classification": ("SequenceClassifierOutput",),
        "multiple-choice": ("MultipleChoiceModelOutput",), "token-classification": ("TokenClassifierOutput",),
        "question-answering": ("QuestionAnsweringModelOutput",), "masked-lm": ("MaskedLMOutput",),
        "pretraining": ("ElectraForPreTrainingOutput",)}[head]
    for key in OUTPUTS[head]:
        assert np.asarray(getattr(out, key)).shape == ref[key].shape, key
    if head in ("token-classification", "question-answering", "masked-lm", "pretraining"):
        # per-token logits: compare at real tokens (transformers computes padding rows too, unmasked)
        for key in OUTPUTS[head]:
            d = np.abs(masked_rows(getattr(out, key), mask) - masked_rows(ref.pop(key), mask)).max()
            assert d <= TOL[key], f"{key}: {d:.3g}"
    assert_parity(out, ref, mask, [k for k in OUTPUTS[head] if k in ref])


def test_output_names_and_access(tmp_path):
    folder = make_checkpoint(tmp_path, "distilbert", "question-answering", **TEST_VOCAB, **SMALL["distilbert"])
    out = minibert.TFAutoModelForQuestionAnswering.from_pretrained(folder)(IDS, attention_mask=MASK)
    assert list(out.keys()) == ["start_logits", "end_logits"]
    assert out.start_logits is out["start_logits"] is out[0] and out[1] is out.end_logits
    assert out.start_logits.shape == (3, 8)


def test_multiple_choice_wrong_rank_is_a_clear_error(tmp_path):
    folder = make_checkpoint(tmp_path, "bert", "multiple-choice", **TEST_VOCAB, **SMALL["bert"])
    model = minibert.AutoModelForMultipleChoice.from_pretrained(folder)
    with pytest.raises(ValueError, match=r"multiple-choice input_ids must be \(batch, choices, seq\), got shape \(3, 8\)"):
        model(IDS, attention_mask=MASK)
    assert model(MC_IDS, attention_mask=MC_MASK).logits.shape == (2, 3)  # still usable


@pytest.mark.parametrize("family", ["deberta-v2", "modernbert", "electra", "xlm-roberta"])
def test_trace_follows_each_family(tmp_path, family):
    """`trace` on a family's classifier: one stage per layer plus the embeddings, the head's own input (DeBERTa's
    ContextPooler, ModernBERT's pooled and normed head), and the model's logits; the tokenizer is MiniLM's."""
    import json
    import shutil

    from minibert import trace as tr
    from reference import minilm_dir

    folder = make_checkpoint(tmp_path, family, "sequence-classification", vocab_size=30522, **SMALL[family])
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(f"{minilm_dir()}/{name}", folder)
    model, tok = minibert.AutoModelForSequenceClassification.from_pretrained(folder), minibert.AutoTokenizer.from_pretrained(folder)
    texts = ["hello world!", "a longer text, padded to the other one"]
    r = tr.trace(texts, model, tok)
    json.dumps(tr.to_json(r))  # JSON-ready
    enc = tok(texts, padding=True, return_tensors="np")
    out = model(enc, output_hidden_states=True)
    assert r["head"] == "sequence-classification" and len(r["stages"]) == 1 + model.config.num_hidden_layers
    pooled, what = model.head_input(out.hidden_states[-1])
    assert r["head_input"]["stage"] == what and r["head_input"]["shape"] == list(pooled.shape)
    assert np.abs(np.asarray(r["logits"]) - out.logits.numpy()).max() <= 1e-4  # rounded for display
    assert what in tr.format_trace(r)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_masked_lm_tied_weights_round_trip(tmp_path, family):
    """The decoder is the word-embedding variable itself; save_pretrained writes it once, and transformers
    loads the folder with nothing missing or unexpected."""
    import torch
    import transformers as tr

    src = make_checkpoint(tmp_path / "src", family, "masked-lm", **{**TEST_VOCAB, **SMALL[family]})
    model = minibert.AutoModelForMaskedLM.from_pretrained(src)
    embeddings = model.body.embeddings
    emb = getattr(embeddings, "word_embeddings", None) or embeddings.tok_embeddings  # ModernBERT: tok_embeddings
    emb = emb.embeddings
    emb.assign(emb.numpy() * 1.5)  # a change to the embeddings is a change to the decoder
    model.save_pretrained(tmp_path / "out")
    from safetensors.numpy import load_file

    saved = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert not [k for k in saved if "decoder.weight" in k or k in ("vocab_projector.weight", "generator_lm_head.weight")]
    ref, info = tr.AutoModelForMaskedLM.from_pretrained(tmp_path / "out", attn_implementation="eager",
                                                        output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids, mask = (RB_IDS, RB_MASK) if family in ROBERTA_LIKE else (IDS, MASK)
    with torch.no_grad():
        want = ref.eval()(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    got = model(ids, attention_mask=mask).logits.numpy()
    assert np.abs(masked_rows(got, mask) - masked_rows(want, mask)).max() <= 1e-5


def test_checkpoint_with_an_explicit_decoder_weight_is_not_reported(tmp_path, caplog):
    """Older checkpoints store the tied decoder weight too: it is the embedding, skipped without a word."""
    from safetensors.numpy import load_file, save_file

    folder = make_checkpoint(tmp_path, "bert", "masked-lm", **TEST_VOCAB, **SMALL["bert"])
    path = tmp_path / "model.safetensors"
    state = load_file(str(path))
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    save_file(state, str(path), metadata={"format": "pt"})
    _, info = minibert.AutoModelForMaskedLM.from_pretrained(folder, output_loading_info=True)
    assert info.unexpected_keys == [] and info.missing_keys == []


def test_head_that_does_not_fit_is_reported(tmp_path, caplog):
    """A token classifier loaded as a QA model: transformers' report of unused and newly initialised weights."""
    folder = make_checkpoint(tmp_path, "bert", "token-classification", **TEST_VOCAB, **SMALL["bert"])
    with caplog.at_level("WARNING", logger="minibert"):
        model, info = minibert.AutoModelForQuestionAnswering.from_pretrained(folder, output_loading_info=True)
    assert info.unexpected_keys == ["classifier.bias", "classifier.weight"]
    assert sorted(info.missing_keys) == ["qa_outputs.bias", "qa_outputs.weight"]
    assert "were not used" in caplog.text and "newly initialized" in caplog.text
    assert np.isfinite(model(IDS, attention_mask=MASK).start_logits.numpy()).all()


@pytest.mark.parametrize("head", ["token-classification", "question-answering", "masked-lm", "multiple-choice"])
def test_architectures_pick_the_class(tmp_path, head):
    folder = make_checkpoint(tmp_path, "distilbert", head, **TEST_VOCAB, **SMALL["distilbert"])
    config = minibert.AutoConfig.from_pretrained(folder)
    assert class_for_architecture(config).__name__ == "DistilBert" + HEADS[head]


@pytest.mark.slow
def test_bert_base_sized_masked_lm(tmp_path_factory):
    """bert-base-uncased's shape (12 x 768, vocab 30522): MLM logits over the whole vocabulary."""
    folder = make_checkpoint(tmp_path_factory.mktemp("bert_base_mlm"), "bert", "masked-lm", seed=3, **BASE["bert"])
    ids = [[101, 2023, 2003, 1037, 103, 1012, 102, 0], [101, 103, 2001, 2307, 1012, 102, 0, 0], [101, 7592, 102] + [0] * 5]
    mask = (np.asarray(ids) != 0).astype(int).tolist()
    out, ref = minibert.AutoModelForMaskedLM.from_pretrained(folder), reference(folder, ids, mask, head="masked-lm")
    got = out(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert got.logits.shape == (3, 8, 30522)
    assert np.abs(masked_rows(got.logits, mask) - masked_rows(ref.pop("logits"), mask)).max() <= 1e-5
    assert_parity(got, ref, mask, [])


@pytest.mark.slow
def test_distilbert_base_sized_question_answering(tmp_path_factory):
    folder = make_checkpoint(tmp_path_factory.mktemp("distilbert_base_qa"), "distilbert", "question-answering", seed=4,
                             **BASE["distilbert"])
    ids = [[101, 2040, 2003, 102, 2002, 2003, 1037, 3836, 1012, 102], [101, 2054, 102, 2009, 102, 0, 0, 0, 0, 0]]
    mask = (np.asarray(ids) != 0).astype(int).tolist()
    got = minibert.AutoModelForQuestionAnswering.from_pretrained(folder)(
        ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    ref = reference(folder, ids, mask, head="question-answering")
    for key in ("start_logits", "end_logits"):
        assert np.abs(masked_rows(getattr(got, key), mask) - masked_rows(ref.pop(key), mask)).max() <= 1e-5
    assert_parity(got, ref, mask, [])


@pytest.mark.slow
def test_roberta_base_sized_classifier_padded_both_sides(tmp_path_factory):
    """roberta-base's shape (12 x 768, 50265 tokens, 514 positions, pad id 1), rows padded right and left."""
    folder = make_checkpoint(tmp_path_factory.mktemp("roberta_base_cls"), "roberta", "sequence-classification", seed=5,
                             **BASE["roberta"])
    ids = [[0, 713, 16, 205, 4, 2, 1, 1], [1, 1, 1, 0, 100, 4157, 24, 2], [0, 31414, 328, 5, 11, 9, 10, 2]]
    mask = (np.asarray(ids) != 1).astype(int).tolist()
    got = minibert.AutoModelForSequenceClassification.from_pretrained(folder)(
        ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    ref = reference(folder, ids, mask, head="sequence-classification")
    assert_parity(got, ref, mask, ["logits"])


@pytest.mark.slow
def test_electra_base_sized_token_classifier(tmp_path_factory):
    """electra-base-discriminator's shape (12 x 768, embeddings 768 wide: no projection)."""
    folder = make_checkpoint(tmp_path_factory.mktemp("electra_base_tok"), "electra", "token-classification", seed=6,
                             num_labels=9, **BASE["electra"])
    ids = [[101, 2198, 2003, 1999, 3000, 1012, 102, 0], [101, 7592, 102, 0, 0, 0, 0, 0]]
    mask = (np.asarray(ids) != 0).astype(int).tolist()
    got = minibert.AutoModelForTokenClassification.from_pretrained(folder)(
        ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    ref = reference(folder, ids, mask, head="token-classification")
    assert np.abs(masked_rows(got.logits, mask) - masked_rows(ref.pop("logits"), mask)).max() <= 1e-5
    assert_parity(got, ref, mask, [])


def test_roberta_length_limit_counts_the_padding_offset(tmp_path):
    folder = make_checkpoint(tmp_path, "roberta", "model", **{**SMALL["roberta"], "vocab_size": 120})
    model = minibert.AutoModel.from_pretrained(folder)
    assert model.config.max_sequence_length == 40  # 42 positions, pad id 1
    assert model([[0] + [5] * 38 + [2]]).last_hidden_state.shape == (1, 40, 32)
    with pytest.raises(ValueError, match=r"sequence length 41 exceeds 40 tokens \(max_position_embeddings=42 less"):
        model([[0] + [5] * 39 + [2]])


def test_roberta_config_without_room_for_positions():
    from minibert.config import ConfigError

    with pytest.raises(ConfigError, match="pad_token_id=1 leaves no position"):
        minibert.RobertaConfig(max_position_embeddings=2)


def test_electra_generator_is_not_a_discriminator(tmp_path):
    from minibert.checkpoint import CheckpointError

    folder = make_checkpoint(tmp_path, "electra", "masked-lm", **{**SMALL["electra"], "vocab_size": 120})
    with pytest.raises(CheckpointError, match=r"config.json names ElectraForMaskedLM: an ELECTRA generator, not a "
                                              r"discriminator"):
        minibert.ElectraForPreTraining.from_pretrained(folder)
    assert minibert.AutoModelForMaskedLM.from_pretrained(folder)(IDS).logits.shape == (3, 8, 120)
