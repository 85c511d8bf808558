"""Numerical parity with transformers (PyTorch, eager attention) on padded batches.

Tolerances: max |diff| <= 1e-5 on logits and pooler output, <= 1e-4 on every hidden state and
attention map, compared at real token positions.
"""
import numpy as np
import pytest

import minibert
from reference import MINILM_IDS, MINILM_TEXT, TOL, make_checkpoint, max_diffs, reference


IDS = [[101, 5, 17, 42, 88, 9, 33, 102], [101, 7, 3, 102, 0, 0, 0, 0], [101, 60, 102, 0, 0, 0, 0, 0]]
MASK = [[1] * 8, [1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]]
TYPES = [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0]]

SMALL = [
    ("distilbert", dict(dim=32, n_heads=4, hidden_dim=37, n_layers=2)),
    ("distilbert", dict(dim=48, n_heads=3, hidden_dim=64, n_layers=3, activation="relu")),
    ("distilbert", dict(dim=32, n_heads=8, hidden_dim=40, n_layers=2, activation="gelu_new", sinusoidal_pos_embds=True)),
    ("bert", dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2)),
    ("bert", dict(hidden_size=48, num_attention_heads=6, intermediate_size=50, num_hidden_layers=3,
                  hidden_act="gelu_new", layer_norm_eps=1e-5, type_vocab_size=3)),
    ("bert", dict(hidden_size=24, num_attention_heads=2, intermediate_size=30, num_hidden_layers=2,
                  hidden_act="relu", layer_norm_eps=1e-7)),
]


def assert_close(diffs, expected_keys):
    assert set(expected_keys) <= set(diffs), diffs
    for key, d in diffs.items():
        assert d <= TOL[key], f"{key}: max |diff| {d:.3g} > {TOL[key]:g} ({diffs})"


@pytest.mark.parametrize("family,cfg", SMALL, ids=lambda x: x if isinstance(x, str) else "-".join(f"{k}={v}" for k, v in x.items()))
@pytest.mark.parametrize("head", ["model", "sequence-classification"])
def test_small_configs(tmp_path, family, cfg, head):
    folder = make_checkpoint(tmp_path, family, head, vocab_size=120, max_position_embeddings=40, num_labels=3, **cfg)
    types = TYPES if family == "bert" else None
    if family == "bert" and cfg.get("type_vocab_size", 2) > 2:
        types = (np.asarray(TYPES) * 2).tolist()  # use the third token type too
    ref = reference(folder, IDS, MASK, types, head=head)
    auto = minibert.AutoModel if head == "model" else minibert.AutoModelForSequenceClassification
    model = auto.from_pretrained(folder)
    out = model(IDS, attention_mask=MASK, token_type_ids=types, output_hidden_states=True, output_attentions=True)
    assert_close(max_diffs(out, ref, MASK), ref.keys())


@pytest.mark.slow
def test_distilbert_base_sized_classifier(distilbert_base_cls):
    tok = minibert.AutoTokenizer.from_pretrained(distilbert_base_cls)
    enc = tok([MINILM_TEXT, "I hate this so much!", "ok"], padding=True, return_tensors="np")
    ref = reference(distilbert_base_cls, enc["input_ids"], enc["attention_mask"], head="sequence-classification")
    model = minibert.TFAutoModelForSequenceClassification.from_pretrained(distilbert_base_cls)
    out = model(enc, output_hidden_states=True, output_attentions=True)
    assert out.logits.shape == (3, 2)
    assert_close(max_diffs(out, ref, enc["attention_mask"]), ["logits", "hidden_states", "attentions"])


def test_minilm_real_weights(minilm):
    tok = minibert.AutoTokenizer.from_pretrained(minilm)
    assert tok(MINILM_TEXT)["input_ids"] == MINILM_IDS
    enc = tok([MINILM_TEXT, "I hate this so much!", "A"], padding=True, return_tensors="np")
    ref = reference(minilm, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    model = minibert.TFAutoModel.from_pretrained(minilm)
    out = model(enc, output_hidden_states=True, output_attentions=True)
    assert_close(max_diffs(out, ref, enc["attention_mask"]),
                 ["last_hidden_state", "pooler_output", "hidden_states", "attentions"])
    assert len(out.hidden_states) == 7 and len(out.attentions) == 6
    assert out.attentions[0].shape == (3, 12, enc["input_ids"].shape[1], enc["input_ids"].shape[1])


def test_saved_by_minibert_loads_in_transformers(tmp_path, tiny_bert_cls):
    """save_pretrained writes Hub names: transformers loads the folder with no missing or unexpected keys."""
    import torch
    import transformers as tr

    model = minibert.AutoModelForSequenceClassification.from_pretrained(tiny_bert_cls)
    model.save_pretrained(tmp_path)
    ref_model, info = tr.AutoModelForSequenceClassification.from_pretrained(
        tmp_path, attn_implementation="eager", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        want = ref_model.eval()(torch.tensor(IDS), attention_mask=torch.tensor(MASK)).logits.numpy()
    got = model(IDS, attention_mask=MASK).logits.numpy()
    assert np.abs(got - want).max() <= 1e-5


class TestSeedExperiments:
    """"Handling multiple sequences": padding changes logits unless the attention mask hides it."""

    def test_padding_without_mask_changes_logits(self, distilbert_base_cls):
        model = minibert.AutoModelForSequenceClassification.from_pretrained(distilbert_base_cls)
        seq1, seq2 = [200, 1738, 1111, 6601, 2602, 2039, 1029], [200, 1738, 1111]
        pad = 0
        alone = model([seq2]).logits.numpy()
        batched = [seq1, seq2 + [pad] * 4]
        no_mask = model(batched).logits.numpy()
        assert np.abs(no_mask[1] - alone[0]).max() > 1e-3
        mask = [[1] * 7, [1, 1, 1, 0, 0, 0, 0]]
        masked = model(batched, attention_mask=mask).logits.numpy()
        assert np.abs(masked[1] - alone[0]).max() <= 1e-5
        assert np.abs(masked[0] - model([seq1]).logits.numpy()[0]).max() <= 1e-5
