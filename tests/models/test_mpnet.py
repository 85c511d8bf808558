"""What MPNet has that the other families do not: the relative position bias (its buckets, the long distances
that share them), positions counted from id 1, and the config values it cannot honour."""
import numpy as np
import pytest

import minibert
from minibert.config import ConfigError
from reference import TOL, make_checkpoint, max_diffs, reference
from test_heads import assert_parity, masked_rows


def test_buckets_equal_transformers():
    """Every query - key distance of a 514-position model (all-mpnet-base-v2's) lands in transformers' bucket."""
    import torch
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    from minibert.models.mpnet import relative_position_buckets

    n = 514
    distance = torch.arange(-(n - 1), n)  # query - key
    want = MPNetEncoder.relative_position_bucket(-distance).numpy()  # transformers takes key - query
    got = relative_position_buckets(n)
    assert got.shape == want.shape and (got == want).all()
    # every bucket is used, both directions, exact and logarithmic, but 16: "key after the query at distance 0"
    assert sorted(set(got)) == [b for b in range(32) if b != 16]


def boosted_checkpoint(folder, head, seed=0, scale=50.0, **config):
    """A transformers MPNet checkpoint whose relative position bias is `scale` times its random init, so that a
    distance put in the wrong bucket moves the attention far past the tolerance."""
    from safetensors.torch import load_file, save_file

    make_checkpoint(folder, "mpnet", head, seed=seed, **config)
    path = f"{folder}/model.safetensors"
    state = load_file(path)
    key = next(k for k in state if k.endswith("relative_attention_bias.weight"))
    state[key] = state[key] * scale
    save_file(state, path, metadata={"format": "pt"})
    return str(folder)


def test_long_distances_share_buckets_as_in_transformers(tmp_path):
    """40 tokens (distances up to 39 reach the logarithmic buckets) with a strong bias, rows padded on the right
    and on the left (positions count from the pad id 1 there, while the bias counts plain offsets)."""
    folder = boosted_checkpoint(tmp_path, "masked-lm", vocab_size=120, hidden_size=32, num_attention_heads=4,
                                intermediate_size=37, num_hidden_layers=2, max_position_embeddings=42)
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 120, size=(3, 40))
    mask = np.ones_like(ids)
    mask[1, 25:] = 0
    mask[2, :13] = 0
    ids = np.where(mask == 1, ids, 1)
    ref = reference(folder, ids, mask, head="masked-lm")
    out = minibert.AutoModelForMaskedLM.from_pretrained(folder)(ids, attention_mask=mask, output_hidden_states=True,
                                                                 output_attentions=True)
    assert np.abs(masked_rows(out.logits, mask) - masked_rows(ref.pop("logits"), mask)).max() <= TOL["logits"]
    assert_parity(out, ref, mask, [])
    # the bias matters: without it the attention maps differ by far more than the tolerance
    model = minibert.AutoModel.from_pretrained(folder)
    bias = model.encoder.relative_attention_bias.embeddings
    bias.assign(np.zeros(bias.shape, np.float32))
    unbiased = model(ids, attention_mask=mask, output_attentions=True)
    assert max_diffs(unbiased, {"attentions": ref["attentions"]}, mask)["attentions"] > 100 * TOL["attentions"]


def test_positions_count_from_id_1_whatever_pad_token_id_says(tmp_path):
    """transformers' MPNetEmbeddings hard-codes padding index 1: a config with pad_token_id 0 changes nothing."""
    folder = make_checkpoint(tmp_path, "mpnet", "model", vocab_size=120, hidden_size=32, num_attention_heads=4,
                             intermediate_size=37, num_hidden_layers=2, max_position_embeddings=42, pad_token_id=0)
    ids = [[0, 5, 17, 42, 2, 1, 1], [1, 1, 0, 60, 8, 9, 2]]
    mask = (np.asarray(ids) != 1).astype(int)
    out = minibert.AutoModel.from_pretrained(folder)(ids, attention_mask=mask, output_hidden_states=True,
                                                      output_attentions=True)
    ref = reference(folder, ids, mask)
    assert_parity(out, ref, mask, ["last_hidden_state"])
    assert minibert.MPNetConfig(max_position_embeddings=42).max_sequence_length == 40


@pytest.mark.parametrize("values,message", [
    (dict(relative_attention_num_buckets=16), r"relative_attention_num_buckets=16 is too few: MPNet buckets relative "
                                              r"positions into 32"),
    (dict(max_position_embeddings=2), r"max_position_embeddings=2 leaves no position for a token"),
    (dict(hidden_size=30, num_attention_heads=4), r"hidden_size=30 is not a multiple of num_attention_heads=4"),
])
def test_config_it_cannot_honour_is_one_line(tmp_path, values, message):
    import json

    with pytest.raises(ConfigError, match=message):
        minibert.MPNetConfig(**values)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mpnet", **values}))
    with pytest.raises(ConfigError, match=rf"{tmp_path}/config.json: {message}"):
        minibert.AutoConfig.from_pretrained(tmp_path)


def test_more_buckets_than_used_load_as_in_transformers(tmp_path):
    """A table of 40 rows: transformers still buckets into 32 and never reads the rest; so does minibert."""
    folder = boosted_checkpoint(tmp_path, "model", vocab_size=120, hidden_size=32, num_attention_heads=4,
                                intermediate_size=37, num_hidden_layers=1, max_position_embeddings=42,
                                relative_attention_num_buckets=40)
    ids = np.arange(3, 43)[None] % 120
    out = minibert.AutoModel.from_pretrained(folder)(ids, output_hidden_states=True, output_attentions=True)
    assert_parity(out, reference(folder, ids), None, ["last_hidden_state"])


@pytest.mark.slow
def test_all_mpnet_base_sized_model(tmp_path_factory):
    """all-mpnet-base-v2's shape (12 x 768, vocab 30527, 514 positions, eps 1e-5): 200 tokens, so distances
    past max_distance (128) share the last buckets; rows padded right and left; pooler and every layer."""
    folder = boosted_checkpoint(tmp_path_factory.mktemp("mpnet_base"), "model", seed=9, scale=20.0,
                                max_position_embeddings=514, layer_norm_eps=1e-5)
    rng = np.random.default_rng(1)
    ids = rng.integers(5, 30526, size=(3, 200))
    ids[:, 0], ids[:, -1] = 0, 2
    mask = np.ones_like(ids)
    mask[1, 150:] = 0
    mask[2, :60] = 0
    ids = np.where(mask == 1, ids, 1)
    out = minibert.AutoModel.from_pretrained(folder)(ids, attention_mask=mask, output_hidden_states=True,
                                                      output_attentions=True)
    ref = reference(folder, ids, mask)
    assert out.last_hidden_state.shape == (3, 200, 768)
    assert_parity(out, ref, mask, ["last_hidden_state", "pooler_output"])


def test_keras_get_config_round_trip():
    """The encoder (layers plus the bias table) and a head model rebuild from their Keras configs."""
    config = minibert.MPNetConfig(vocab_size=50, hidden_size=16, num_attention_heads=2, intermediate_size=20,
                                  num_hidden_layers=2, max_position_embeddings=20, num_labels=3)
    model = minibert.TFMPNetForSequenceClassification(config)
    for layer in (model.mpnet.encoder, model.mpnet.encoder.layer[1], model.mpnet.embeddings):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
        assert [w.shape for w in clone.weights] == [w.shape for w in layer.weights]
    clone = type(model).from_config(model.get_config())
    assert clone.config.to_dict() == model.config.to_dict() and len(clone.weights) == len(model.weights)
    assert clone([[0, 5, 6, 2]]).logits.shape == (1, 3)
