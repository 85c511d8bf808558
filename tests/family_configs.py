"""Each family's small and base configs, in one place. The tests, scripts/parity.py and scripts/bench.py all
build their checkpoints from these tables.

Keys are transformers' model_type. Values are keyword arguments for `transformers.AutoConfig.for_model`, and so
for `reference.make_checkpoint`; minibert's configs take the same names. This module is plain data with no
imports, so scripts/bench.py's parent process can read it without loading TensorFlow or PyTorch.

    SMALL          tests/models/test_heads.py: every head against transformers on 8-token rows
    SMALL_ENGINE   tests/models/test_engine.py: the LiteRT engine's parity; SMALL, except where noted
    SMALL_PARITY   scripts/parity.py --all: 64 wide, a vocabulary of 500, 16-token rows
    BASE           the Hub models' sizes: parity.py --all --base, the slow base-sized tests, bench.py's families
    TEST_VOCAB     what the tests' checkpoints take under SMALL/SMALL_ENGINE (those tables' own values win)
    TINY_BERT, TINY_DISTILBERT   the session's shared tiny checkpoints (tests/conftest.py, via tests/reference.py)
"""

# -- family facts that hold at every size -------------------------------------------------------------------
# RoBERTa's Hub settings (XLM-R, CamemBERT and data2vec-text share them): positions counted from pad id 1,
# eps 1e-5, one token type.
ROBERTA_HUB = dict(layer_norm_eps=1e-5, type_vocab_size=1, pad_token_id=1)
# deberta-v3's attention: relative positions only (log buckets), c2p and p2c with shared keys, a LayerNorm on
# the relative embeddings, no token types.
DEBERTA_V3 = dict(relative_attention=True, share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
                  pos_att_type=["p2c", "c2p"], type_vocab_size=0)

# -- the tests' sizes ------------------------------------------------------------------------------------------
TEST_VOCAB = dict(vocab_size=120, max_position_embeddings=40)
TINY = dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2)  # BERT's names

SMALL = {
    "bert": dict(TINY, hidden_act="gelu_new"),
    "distilbert": dict(dim=32, n_heads=4, hidden_dim=37, n_layers=2),
    # 2 more positions than the 40 tokens (pad id 1)
    "roberta": dict(TINY, **ROBERTA_HUB, max_position_embeddings=42),
    "xlm-roberta": dict(hidden_size=24, num_attention_heads=2, intermediate_size=30, num_hidden_layers=2,
                        **ROBERTA_HUB, max_position_embeddings=42),
    "electra": dict(TINY, embedding_size=16),
    # deberta-v3's 256 position buckets cut to 4, so that 8 tokens reach the log buckets
    "deberta-v2": dict(TINY, **DEBERTA_V3, position_buckets=4, layer_norm_eps=1e-7),
    "camembert": dict(hidden_size=24, num_attention_heads=3, intermediate_size=30, num_hidden_layers=2,
                      **ROBERTA_HUB, max_position_embeddings=42),
    "data2vec-text": dict(hidden_size=24, num_attention_heads=3, intermediate_size=30, num_hidden_layers=2,
                          **ROBERTA_HUB, max_position_embeddings=42),
    # MPNet's relative position bias: 40 positions reach the logarithmic buckets (distances 8 to 39).
    "mpnet": dict(TINY, max_position_embeddings=42, hidden_act="gelu_new"),
    # Biases everywhere (the defaults have none: tests/models/test_modernbert.py). Layers 0 and 2 are global and
    # layer 1 sees 2 tokens on each side, so the 8-token rows reach past its window.
    "modernbert": dict(hidden_size=32, num_attention_heads=4, intermediate_size=24, num_hidden_layers=3,
                       global_attn_every_n_layers=2, local_attention=4, norm_bias=True, attention_bias=True,
                       mlp_bias=True, classifier_bias=True, pad_token_id=0, bos_token_id=101, eos_token_id=102,
                       cls_token_id=101, sep_token_id=102),
}

# test_engine.py's values where they differ from SMALL, kept as that file had them: CamemBERT and data2vec-text
# as wide as RoBERTa, MPNet at eps 1e-5 with 40 positions, ModernBERT without biases. deberta-v2 is SMALL's:
# test_engine.py left out layer_norm_eps=1e-7, which is DebertaV2Config's default, so the config is the same.
SMALL_ENGINE = {
    **SMALL,
    "camembert": dict(TINY, **ROBERTA_HUB, max_position_embeddings=42),
    "data2vec-text": dict(TINY, **ROBERTA_HUB, max_position_embeddings=42),
    "mpnet": dict(TINY, layer_norm_eps=1e-5),
    # no biases (the defaults); a window of 2 tokens on each side, so that the 8-token rows run the banded local layers
    "modernbert": dict(hidden_size=32, num_attention_heads=4, intermediate_size=24, num_hidden_layers=3,
                       global_attn_every_n_layers=2, local_attention=4, pad_token_id=0, bos_token_id=1,
                       eos_token_id=2, cls_token_id=1, sep_token_id=2),
}

# The session's shared tiny checkpoints: SMALL's distilbert, and BERT with its default activation.
TINY_DISTILBERT = dict(SMALL["distilbert"], **TEST_VOCAB)
TINY_BERT = dict(TINY, **TEST_VOCAB)

# -- parity.py --all: a size up from the tests', on 16-token rows ------------------------------------------
PARITY = dict(hidden_size=64, num_attention_heads=4, intermediate_size=96, num_hidden_layers=2, vocab_size=500)
SMALL_PARITY = {
    "bert": dict(PARITY),
    "distilbert": dict(dim=64, n_heads=4, hidden_dim=96, n_layers=2, vocab_size=500),
    "roberta": dict(PARITY, **ROBERTA_HUB, max_position_embeddings=130),
    "xlm-roberta": dict(PARITY, **ROBERTA_HUB, max_position_embeddings=130),
    "electra": dict(PARITY, embedding_size=32),
    # 8 position buckets, so that 16 tokens reach the log-bucketed distances
    "deberta-v2": dict(PARITY, **DEBERTA_V3, position_buckets=8),
    "camembert": dict(PARITY, **ROBERTA_HUB, max_position_embeddings=130),
    "data2vec-text": dict(PARITY, **ROBERTA_HUB, max_position_embeddings=130),
    "mpnet": dict(PARITY, max_position_embeddings=130, layer_norm_eps=1e-5),
    # 3 layers (0 and 2 global) and a window of 4 tokens on each side: the 16-token rows reach past it
    "modernbert": dict(PARITY, num_hidden_layers=3, global_attn_every_n_layers=2, local_attention=8, pad_token_id=0,
                       bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2),
}

# -- the Hub models' sizes -----------------------------------------------------------------------------------
# bert-base-uncased and distilbert-base-uncased are transformers' defaults. Where a value below equals
# transformers' default, it is spelled out because bench.py's checkpoints always named it.
BASE = {
    "bert": {},
    "distilbert": {},
    "roberta": dict(vocab_size=50265, max_position_embeddings=514, **ROBERTA_HUB),  # roberta-base
    "xlm-roberta": dict(vocab_size=250002, max_position_embeddings=514, **ROBERTA_HUB),  # xlm-roberta-base
    # electra-base-discriminator: embeddings 768 wide, no projection
    "electra": dict(hidden_size=768, embedding_size=768, num_attention_heads=12, intermediate_size=3072),
    # deberta-v3-base
    "deberta-v2": dict(vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       intermediate_size=3072, max_position_embeddings=512, **DEBERTA_V3, position_buckets=256,
                       max_relative_positions=-1, layer_norm_eps=1e-7),
    "camembert": dict(vocab_size=32005, max_position_embeddings=514, **ROBERTA_HUB),  # camembert-base
    "data2vec-text": dict(vocab_size=50265, max_position_embeddings=514, **ROBERTA_HUB),  # data2vec-text-base
    "mpnet": dict(max_position_embeddings=514, layer_norm_eps=1e-5),  # all-mpnet-base-v2
    # ModernBERT-base. Its config.json also says classifier_pooling="mean", which bench.py adds; parity.py keeps
    # transformers' "cls".
    "modernbert": dict(vocab_size=50368, hidden_size=768, num_hidden_layers=22, num_attention_heads=12,
                       intermediate_size=1152, global_attn_every_n_layers=3, local_attention=128,
                       max_position_embeddings=8192),
}
