"""DeBERTa-v2/v3 beyond the every-family tables of test_heads.py (which run deberta-v3's settings on every
head): the v2 settings (absolute positions too, a convolution after layer 0, separate position projections,
unbucketed distances clamped at max_relative_positions, a narrower embedding), the newer masked-LM layout,
the log buckets against transformers' own function, and configs minibert refuses."""
import json

import numpy as np
import pytest

import minibert
from minibert.config import ConfigError
from reference import make_checkpoint, reference
from test_heads import AUTO, IDS, MASK, SMALL, TYPES, assert_parity, masked_rows

# deberta-v2-xlarge's kind of config, scaled down: distances beyond 6 share the last relative embedding.
V2 = dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2, vocab_size=120,
          max_position_embeddings=40, relative_attention=True, max_relative_positions=6, position_buckets=-1,
          share_att_key=False, norm_rel_ebd="none", position_biased_input=True, pos_att_type="c2p|p2c",
          type_vocab_size=2, conv_kernel_size=3, conv_act="gelu", embedding_size=16, layer_norm_eps=1e-7)


def check(folder, head):
    ref = reference(folder, IDS, MASK, TYPES, head=head)
    out = AUTO[head].from_pretrained(folder)(IDS, attention_mask=MASK, token_type_ids=TYPES,
                                             output_hidden_states=True, output_attentions=True)
    if head == "masked-lm":
        assert np.abs(masked_rows(out.logits, MASK) - masked_rows(ref.pop("logits"), MASK)).max() <= 1e-5
    assert_parity(out, ref, MASK, [k for k in ("logits", "last_hidden_state") if k in ref])


@pytest.mark.parametrize("head", ["model", "masked-lm"])
def test_v2_settings_match_transformers(tmp_path, head):
    """Conv layer, absolute + relative positions, pos_key_proj/pos_query_proj, embed_proj, the legacy LM head at
    embedding_size; token types read (type_vocab_size 2)."""
    folder = make_checkpoint(tmp_path, "deberta-v2", head, num_labels=3, **V2)
    config = minibert.AutoConfig.from_pretrained(folder)
    assert config.pos_att_type == ["c2p", "p2c"] and config.conv_kernel_size == 3
    check(folder, head)


def test_newer_masked_lm_layout_round_trips(tmp_path):
    """legacy=false: `lm_predictions.lm_head`; what save_pretrained writes loads in transformers with nothing
    missing or unexpected. (transformers 4.57 ties that head's dense layer to the word embeddings unless
    tie_word_embeddings is false, and then cannot run it.)"""
    import transformers as tr

    cfg = {**SMALL["deberta-v2"], "vocab_size": 120, "max_position_embeddings": 40, "legacy": False,
           "tie_word_embeddings": False}
    src = make_checkpoint(tmp_path / "src", "deberta-v2", "masked-lm", seed=2, **cfg)
    model = minibert.AutoModelForMaskedLM.from_pretrained(src)
    assert hasattr(model, "lm_predictions") and not hasattr(model, "cls")
    model.save_pretrained(tmp_path / "out")
    _, info = tr.DebertaV2ForMaskedLM.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    check(str(tmp_path / "out"), "masked-lm")


@pytest.mark.parametrize("buckets,max_position", [(256, 512), (4, 40), (32, 128)])
def test_log_buckets_equal_transformers(buckets, max_position):
    """Every distance up to 4096 (far past any position table) falls in transformers' bucket."""
    import torch
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    from minibert.models.deberta_v2 import log_bucket_table

    n = 4096
    want = make_log_bucket_position(torch.arange(-(n - 1), n), buckets, max_position).numpy()
    np.testing.assert_array_equal(log_bucket_table(n, buckets, max_position), want)


def test_token_types_are_ignored_without_a_table(tmp_path):
    """deberta-v3 has type_vocab_size 0: its tokenizer's token types (1 for a text pair) change nothing."""
    folder = make_checkpoint(tmp_path, "deberta-v2", "model", vocab_size=120, max_position_embeddings=40,
                             **SMALL["deberta-v2"])
    model = minibert.AutoModel.from_pretrained(folder)
    with_types = model(IDS, attention_mask=MASK, token_type_ids=TYPES).last_hidden_state.numpy()
    np.testing.assert_array_equal(with_types, model(IDS, attention_mask=MASK).last_hidden_state.numpy())


@pytest.mark.parametrize("values,message", [
    (dict(pos_att_type=["c2p", "p2p"]), r"pos_att_type 'p2p' is not supported"),
    (dict(pos_att_type="c2p|c2c"), r"pos_att_type 'c2c' is not supported"),
    (dict(norm_rel_ebd="batch_norm"), r"norm_rel_ebd 'batch_norm' is not supported"),
    (dict(conv_kernel_size=4), r"conv_kernel_size=4 is not supported"),
    (dict(conv_kernel_size=3, conv_groups=2), r"conv_groups=2 is not supported"),
    (dict(pooler_hidden_size=64), r"pooler_hidden_size=64 differs from hidden_size=32"),
    (dict(type_vocab_size=-1), r"type_vocab_size must be a non-negative integer"),
    (dict(relative_attention=True, position_buckets=256, max_position_embeddings=100),
     r"max_relative_positions=100 must exceed position_buckets / 2 \+ 1"),
])
def test_unsupported_config_is_one_line_naming_the_field(tmp_path, values, message):
    base = dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2, vocab_size=120)
    with pytest.raises(ConfigError, match=message):
        minibert.DebertaV2Config(**{**base, **values})
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "deberta-v2", **base, **values}))
    with pytest.raises(ConfigError, match="config.json: " + message) as e:
        minibert.AutoModel.from_pretrained(tmp_path)
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_deberta_v3_base_sized_classifier(tmp_path_factory):
    """microsoft/deberta-v3-base's config (12 x 768, 128,100 tokens, 256 buckets, 512 positions), a three-way
    classifier as the NLI fine-tunes are; inputs long enough (300 tokens) to reach the log buckets."""
    folder = make_checkpoint(tmp_path_factory.mktemp("deberta_v3_base"), "deberta-v2", "sequence-classification",
                             seed=7, vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                             intermediate_size=3072, max_position_embeddings=512, relative_attention=True,
                             position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True,
                             pos_att_type=["p2c", "c2p"], position_biased_input=False, type_vocab_size=0,
                             layer_norm_eps=1e-7, num_labels=3)
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 128100, size=(2, 300))
    ids[:, 0], mask = 1, np.ones_like(ids)
    mask[1, 170:], ids[1, 170:] = 0, 0
    got = minibert.AutoModelForSequenceClassification.from_pretrained(folder)(
        ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert_parity(got, reference(folder, ids, mask, head="sequence-classification"), mask, ["logits"])
