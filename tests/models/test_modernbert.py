"""ModernBERT against transformers 4.57 (eager attention) past its local window: the banded sliding-window
layers and the chunked global layers (inputs longer than they reach) against the whole (T x T) masked
version that transformers computes, on padded batches, with the defaults' bias-free LayerNorms perturbed."""
import numpy as np
import pytest

import minibert
from minibert.config import ConfigError
from minibert.models import modernbert
from reference import TOL, make_checkpoint, max_diffs, reference

# Layers 0 and 3 global, 1 and 2 sliding-window (4 tokens each side); no biases anywhere, as the Hub's.
TINY = dict(vocab_size=120, hidden_size=32, num_attention_heads=4, intermediate_size=24, num_hidden_layers=4,
            global_attn_every_n_layers=3, local_attention=8, max_position_embeddings=64, pad_token_id=0,
            bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)
T = 40
rng = np.random.default_rng(0)
IDS = rng.integers(3, 120, size=(3, T))
IDS[:, 0] = 1
MASK = np.ones((3, T), dtype=int)
MASK[1, 23:] = 0  # right padding
MASK[2, :15] = 0  # left padding: [CLS] sits at position 15
IDS[MASK == 0] = 0
IDS[1, 22] = IDS[2, -1] = 2
CASES = [("model", dict(norm_bias=False)),
         ("sequence-classification", dict(classifier_pooling="mean", num_labels=3, norm_bias=True)),
         ("multiple-choice", dict(classifier_pooling="cls")),  # the first real token: position 15 in the last row
         pytest.param("masked-lm", dict(norm_bias=True), marks=pytest.mark.slow)]
AUTO = {"model": minibert.AutoModel, "masked-lm": minibert.AutoModelForMaskedLM,
        "sequence-classification": minibert.AutoModelForSequenceClassification,
        "multiple-choice": minibert.AutoModelForMultipleChoice,
        "question-answering": minibert.AutoModelForQuestionAnswering}
OUTPUT = {"model": "last_hidden_state", "masked-lm": "logits", "sequence-classification": "logits",
          "multiple-choice": "logits", "question-answering": "start_logits"}


def inputs(head, ids=IDS, mask=MASK):
    if head == "multiple-choice":  # 1 question x 3 choices, padded differently
        return ids[None], mask[None]
    return ids, mask


def compare(got, ref, mask, key, hidden=True):
    want = ref[key]
    g = np.asarray(getattr(got, key))
    if g.ndim == 3:  # per token: real positions only
        g, want = g[mask.astype(bool)], want[mask.astype(bool)]
    assert np.abs(g - want).max() <= TOL[key], (key, np.abs(g - want).max())
    if hidden:
        diffs = max_diffs(got, {"hidden_states": ref["hidden_states"]}, mask)
        assert diffs["hidden_states"] <= TOL["hidden_states"], diffs


@pytest.mark.parametrize("head,extra", CASES)
def test_past_the_window_banded_and_whole_equal_transformers(tmp_path, monkeypatch, head, extra):
    """40 tokens, window 8: without attention maps the local layers run banded and (chunk lowered to 16) the
    global layers in query chunks; with them, whole. Both equal transformers' eager masked attention."""
    folder = make_checkpoint(tmp_path, "modernbert", head, seed=7, **{**TINY, **extra})
    ids, mask = inputs(head)
    ref = reference(folder, ids, mask, head=head)
    flat = mask.reshape(-1, T)
    model = AUTO[head].from_pretrained(folder)
    whole = model(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    compare(whole, ref, flat, OUTPUT[head])
    assert max_diffs(whole, {"attentions": ref["attentions"]}, flat)["attentions"] <= TOL["attentions"]
    monkeypatch.setattr(modernbert, "GLOBAL_QUERY_CHUNK", 16)
    banded = model(ids, attention_mask=mask, output_hidden_states=True)  # traced now, with the lower chunk
    assert banded.attentions is None
    compare(banded, ref, flat, OUTPUT[head])


def test_banded_attention_equals_the_masked_version_everywhere():
    """The banded layer against the (T x T) masked one, padding rows included (a padding row whose window holds
    no real key averages every key, as the eager softmax of equal scores does), across window sizes."""
    import keras
    import tensorflow as tf

    drop = keras.layers.Dropout(0.0)
    r = np.random.default_rng(1)
    for half_window, t in ((1, 7), (2, 9), (4, 40), (64, 300), (5, 5)):
        q, k, v = (tf.constant(r.normal(size=(2, t, 2, 8)).astype(np.float32)) for _ in range(3))
        mask = np.ones((2, t), dtype=np.int32)
        mask[1, t // 2:] = 0
        got = modernbert.banded_attention(q, k, v, tf.constant(mask), half_window, drop).numpy()
        pos = np.arange(t)
        add = np.where(np.abs(pos[:, None] - pos[None, :]) <= half_window, (1.0 - mask[:, None, None, :]) *
                       np.finfo(np.float32).min, np.finfo(np.float32).min).astype(np.float32)  # (B, 1, T, T)
        flat = (2, t, 16)
        want, _ = minibert.layers.multi_head_attention(tf.reshape(q, flat), tf.reshape(k, flat), tf.reshape(v, flat),
                                                       tf.constant(add), 2, drop)
        assert np.abs(got - want.numpy()).max() <= 1e-5, (half_window, t)


def test_question_answering_and_bias_free_checkpoint_round_trip(tmp_path):
    """QA (classifier of 2 outputs) on the long batch; save_pretrained of a bias-free model writes no bias and
    transformers loads it with nothing missing or unexpected."""
    from reference import reference_class

    folder = make_checkpoint(tmp_path / "src", "modernbert", "question-answering", seed=8, **TINY)
    model = minibert.AutoModelForQuestionAnswering.from_pretrained(folder)
    model.save_pretrained(tmp_path / "out")
    _, info = reference_class("modernbert", "question-answering").from_pretrained(tmp_path / "out",
                                                                                  output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    from safetensors.numpy import load_file

    names = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert "model.layers.1.attn_norm.weight" in names and "model.layers.0.attn_norm.weight" not in names
    assert [n for n in names if n.endswith("bias")] == ["classifier.bias"]
    ref = reference(str(tmp_path / "out"), IDS, MASK, head="question-answering")
    got = model(IDS, attention_mask=MASK)
    for key in ("start_logits", "end_logits"):
        m = MASK.astype(bool)
        assert np.abs(np.asarray(getattr(got, key))[m] - ref[key][m]).max() <= 1e-5


def test_untied_decoder_without_bias(tmp_path):
    """tie_word_embeddings=false: the decoder is its own weight, loaded and saved; decoder_bias=false: none."""
    from reference import reference_class
    from safetensors.numpy import load_file

    folder = make_checkpoint(tmp_path / "src", "modernbert", "masked-lm", seed=10, tie_word_embeddings=False,
                             decoder_bias=False, **TINY)
    model, info = minibert.AutoModelForMaskedLM.from_pretrained(folder, output_loading_info=True)
    assert info.missing_keys == [] and info.unexpected_keys == []
    model.save_pretrained(tmp_path / "out")
    assert "decoder.weight" in load_file(str(tmp_path / "out" / "model.safetensors"))
    _, info = reference_class("modernbert", "masked-lm").from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ref = reference(folder, IDS, MASK, head="masked-lm")
    compare(model(IDS, attention_mask=MASK, output_hidden_states=True), ref, MASK, "logits")


@pytest.mark.parametrize("field,value,message", [
    ("hidden_activation", "gelu_exact", r"hidden_activation='gelu_exact' is not supported"),
    ("classifier_activation", "mish", r"classifier_activation='mish' is not supported"),
    ("classifier_pooling", "max", r"classifier_pooling='max' is not supported \(only 'cls' or 'mean'\)"),
    ("rope_scaling", {"rope_type": "linear", "factor": 2.0}, r"rope_scaling=.*is not supported"),
    ("hidden_size", 30, r"hidden_size=30 is not a multiple of num_attention_heads=4"),
])
def test_config_asking_for_what_is_not_implemented(field, value, message):
    with pytest.raises(ConfigError, match=message):
        config = minibert.ModernBertConfig.from_dict({**TINY, field: value})
        minibert.ModernBertForSequenceClassification(config)


def test_no_token_types_and_length_limit(tmp_path):
    folder = make_checkpoint(tmp_path, "modernbert", "model", **TINY)
    model = minibert.AutoModel.from_pretrained(folder)
    with pytest.raises(ValueError, match=r"sequence length 65 exceeds max_position_embeddings=64"):
        model(np.ones((1, 65), dtype=int))
    with pytest.raises(ValueError, match=r"token_type_id 1 is outside \[0, 1\)"):
        model([[1, 5, 2]], token_type_ids=[[0, 1, 1]])
    assert model([[1, 5, 2]]).last_hidden_state.shape == (1, 3, 32)  # still usable


@pytest.mark.slow
@pytest.mark.parametrize("head", ["masked-lm", "sequence-classification"])
def test_modernbert_base_sized_past_the_window(tmp_path_factory, head):
    """ModernBERT-base's shape (22 x 768, vocab 50368, window 128, global every 3rd layer) on 700 tokens, one
    row padded: the banded and chunked layers (no maps) and the whole ones (maps) against transformers."""
    folder = make_checkpoint(tmp_path_factory.mktemp(f"modernbert_base_{head}"), "modernbert", head, seed=9,
                             num_labels=3, norm_bias=head == "masked-lm")
    r = np.random.default_rng(2)
    ids = r.integers(5, 50000, size=(2, 700))
    ids[:, 0] = 50281
    mask = np.ones_like(ids)
    mask[1, 610:] = 0
    ids[1, 609], ids[1, 610:] = 50282, 50283
    ref = reference(folder, ids, mask, head=head)
    key = "logits"
    model = AUTO[head].from_pretrained(folder)
    compare(model(ids, attention_mask=mask, output_hidden_states=True), ref, mask, key)
    whole = model(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    compare(whole, ref, mask, key)
    assert max_diffs(whole, {"attentions": ref["attentions"]}, mask)["attentions"] <= TOL["attentions"]
