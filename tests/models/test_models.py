"""Model inputs, outputs, configs and bad input: what a transformers user expects, and clear errors."""
import json

import numpy as np
import pytest
import tensorflow as tf

import minibert
from minibert import BertConfig, DistilBertConfig

IDS = [[101, 5, 17, 42, 102], [101, 7, 102, 0, 0]]
MASK = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


@pytest.fixture(scope="module")
def bert(tiny_bert_cls):
    return minibert.AutoModelForSequenceClassification.from_pretrained(tiny_bert_cls)


@pytest.fixture(scope="module")
def distil(tiny_distilbert_cls):
    return minibert.AutoModelForSequenceClassification.from_pretrained(tiny_distilbert_cls)


def test_input_forms_agree(bert):
    want = bert(tf.constant(IDS), attention_mask=tf.constant(MASK)).logits.numpy()
    for ids, mask in [(np.array(IDS), np.array(MASK)), (IDS, MASK), (np.array(IDS, np.int64), tf.constant(MASK, tf.int64))]:
        np.testing.assert_array_equal(bert(ids, attention_mask=mask).logits.numpy(), want)
    np.testing.assert_array_equal(bert({"input_ids": IDS, "attention_mask": MASK}).logits.numpy(), want)
    np.testing.assert_array_equal(bert(**{"input_ids": IDS, "attention_mask": MASK}).logits.numpy(), want)


def test_inside_a_users_tf_function(bert):
    """Symbolic inputs skip the numpy checks and run the Keras layers in the caller's graph."""
    want = bert(IDS, attention_mask=MASK).logits.numpy()

    @tf.function
    def f(ids, mask):
        return bert(ids, attention_mask=mask).logits

    np.testing.assert_allclose(f(tf.constant(IDS), tf.constant(MASK)).numpy(), want, atol=1e-6)
    one = tf.function(lambda ids: bert(ids).logits)(tf.constant(IDS[0]))  # 1-D ids and no mask there too
    np.testing.assert_allclose(one.numpy(), bert(IDS[0]).logits.numpy(), atol=1e-6)
    # training=True runs the same layers with dropout active: different from inference, still finite
    noisy = bert(IDS, attention_mask=MASK, training=True).logits.numpy()
    assert noisy.shape == want.shape and np.isfinite(noisy).all()


def test_one_dimensional_ids_are_a_batch_of_one(distil):
    a = distil(IDS[0]).logits
    assert a.shape == (1, 2)
    np.testing.assert_array_equal(a.numpy(), distil([IDS[0]]).logits.numpy())


def test_no_mask_means_all_ones(distil):
    np.testing.assert_array_equal(distil(IDS).logits.numpy(), distil(IDS, attention_mask=np.ones((2, 5), int)).logits.numpy())


def test_output_access(bert, tiny_bert_base):
    out = bert(IDS, attention_mask=MASK)
    assert out.logits is out["logits"] is out[0]
    assert list(out.keys()) == ["logits"] and out.hidden_states is None
    out = bert(IDS, output_hidden_states=True, output_attentions=True)
    assert list(out.keys()) == ["logits", "hidden_states", "attentions"]
    assert len(out[1]) == 3 and out[2][0].shape == (2, 4, 5, 5)
    base = minibert.TFAutoModel.from_pretrained(tiny_bert_base)(IDS)
    assert base.last_hidden_state.shape == (2, 5, 32) and base.pooler_output.shape == (2, 32)
    assert base[1] is base.pooler_output
    logits, = bert(IDS, return_dict=False)
    assert logits.shape == (2, 3)


def test_fully_masked_row_is_finite_and_uniform(bert):
    out = bert(IDS, attention_mask=[[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], output_attentions=True)
    assert np.isfinite(out.logits.numpy()).all()
    np.testing.assert_allclose(out.attentions[0].numpy()[1], 1 / 5, rtol=1e-6)  # uniform over all keys


def test_attention_rows_sum_to_one_and_skip_padding(bert):
    att = bert(IDS, attention_mask=MASK, output_attentions=True).attentions
    for a in att:
        a = a.numpy()
        np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5)
        assert (a[1, :, :, 3:] == 0).all()  # padded keys get exactly zero weight


class TestBadInput:
    def test_ids_out_of_vocab(self, bert):
        with pytest.raises(ValueError, match=r"token id 120 is outside the vocabulary \[0, 120\)"):
            bert([[101, 120]])
        with pytest.raises(ValueError, match=r"token id -1 is outside"):
            bert([[101, -1]])
        with pytest.raises(ValueError, match=r"token id 4294967397 is outside"):  # would wrap to 101 in int32
            bert(np.array([[2**32 + 101]], np.int64))
        assert bert(IDS).logits.shape == (2, 3)  # still usable

    def test_attention_mask_is_ones_and_zeros(self, bert):
        with pytest.raises(ValueError, match="attention_mask holds 2: it must be 1 for a real token and 0"):
            bert(IDS, attention_mask=[[1, 1, 1, 1, 2], [1, 1, 1, 0, 0]])
        assert bert(IDS, attention_mask=MASK).logits.shape == (2, 3)

    def test_too_long(self, bert):
        with pytest.raises(ValueError, match="sequence length 41 exceeds max_position_embeddings=40"):
            bert([[1] * 41])
        assert bert(IDS).logits.shape == (2, 3)

    def test_token_types(self, bert, distil):
        with pytest.raises(ValueError, match=r"token_type_id 2 is outside \[0, 2\)"):
            bert(IDS, token_type_ids=[[0, 0, 0, 0, 2], [0] * 5])

    def test_ragged_and_wrong_types(self, bert):
        with pytest.raises(ValueError, match="different lengths"):
            bert([[1, 2, 3], [1, 2]])
        with pytest.raises(TypeError, match="integers"):
            bert([[1.5, 2.0]])
        with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4\) but input_ids has \(2, 5\)"):
            bert(IDS, attention_mask=[[1] * 4] * 2)
        with pytest.raises(ValueError, match="empty"):
            bert(np.zeros((1, 0), int))
        with pytest.raises(TypeError, match="unexpected model inputs"):
            bert({"input_ids": IDS, "labels": [0, 1]})


class TestConfig:
    def test_defaults_are_base_uncased(self):
        c = BertConfig()
        assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size, c.vocab_size) == (768, 12, 12, 3072, 30522)
        d = DistilBertConfig()
        assert (d.dim, d.n_layers, d.n_heads, d.hidden_dim, d.vocab_size) == (768, 6, 12, 3072, 30522)

    def test_print_shows_json(self):
        text = repr(BertConfig())
        assert text.startswith("BertConfig {")
        assert json.loads(text[len("BertConfig "):])["hidden_size"] == 768

    def test_round_trip_and_extras(self, tmp_path):
        c = DistilBertConfig(dim=64, n_heads=4, id2label={0: "NEG", 1: "POS"}, extra={"transformers_version": "4.0"})
        c.save_pretrained(tmp_path)
        again = minibert.AutoConfig.from_pretrained(tmp_path)
        assert isinstance(again, DistilBertConfig) and again.to_dict() == c.to_dict()
        assert again.label2id == {"NEG": 0, "POS": 1} and again.num_labels == 2
        assert json.loads(c.to_json_string())["transformers_version"] == "4.0"

    def test_num_labels(self):
        assert BertConfig(num_labels=5).id2label[4] == "LABEL_4"

    def test_bad_values(self):
        with pytest.raises(ValueError, match="not a multiple"):
            BertConfig(hidden_size=30, num_attention_heads=4)
        with pytest.raises(ValueError, match="unsupported activation 'gelu_42'"):
            minibert.BertModel(BertConfig(hidden_size=8, num_attention_heads=2, intermediate_size=8,
                                          num_hidden_layers=1, hidden_act="gelu_42"))


def test_model_from_config_alone_has_random_weights():
    config = BertConfig(hidden_size=16, num_attention_heads=2, intermediate_size=20, num_hidden_layers=1, vocab_size=50)
    model = minibert.TFBertModel(config)
    out = model([[1, 2, 3]])
    assert out.last_hidden_state.shape == (1, 3, 16)
    assert np.std(model.embeddings.word_embeddings.embeddings.numpy()) > 0.01


def test_keras_get_config_round_trip(bert):
    layer = bert.bert.encoder.layer[0]
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    model = type(bert).from_config(bert.get_config())
    assert model.config.to_dict() == bert.config.to_dict()
    assert len(model.weights) == len(bert.weights)
