"""DeBERTa-v2 and DeBERTa-v3 (`model_type` "deberta-v2"), as differences from BERT (`models/bert.py`).

Mirrors transformers' `models/deberta_v2/modeling_deberta_v2.py`. The feed-forward and add & norm blocks
are BERT's; what differs is stated here:
- disentangled attention: besides content->content (q.k), the scores add content->position (q against the
  projected relative-position embedding of each key's distance, "c2p") and position->content (each key
  against the projected embedding of the query's distance, "p2c"), as `pos_att_type` lists; all terms are
  divided by sqrt(head_dim * (1 + number of terms));
- the relative distances query - key are log-bucketed past `position_buckets / 2` (up to
  `max_relative_positions`); the table `encoder.rel_embeddings` passes `encoder.LayerNorm` when `norm_rel_ebd`
  says "layer_norm", and with `share_att_key` the position terms reuse `query_proj` / `key_proj`;
- the embeddings add absolute positions only if `position_biased_input` (v3: no), token types only if
  `type_vocab_size` > 0 (v3: 0, token types are read and ignored), project `embedding_size` -> hidden_size
  without a bias when they differ, and zero padding rows after the LayerNorm;
- a padding query attends to nothing (its whole row is masked, a uniform softmax), not only padding keys;
- the xlarge v2 models add a convolution (`encoder.conv`, `conv_kernel_size`) over the embeddings to the first
  layer's output;
- the classifiers read `pooler` (transformers' ContextPooler: dense + `pooler_hidden_act` on [CLS]), the
  masked LM is `cls.predictions` (legacy, BERT's layout at `embedding_size`) or `lm_predictions.lm_head`.
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from ..config import DebertaV2Config
from ..heads import ForMaskedLM, ForMultipleChoice, ForQuestionAnswering, ForSequenceClassification, ForTokenClassification
from ..heads import HeadModel
from ..interp import attention_output, hook, hook_block
from ..layers import ConfigLayer, Embedding, LayerNorm, Linear, TiedDecoder, get_activation, weight_initializer
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, encoder_output
from .bert import BertAddNorm, BertIntermediate


def log_bucket_table(length: int, bucket_size: int, max_position: int) -> np.ndarray:
    """The bucket of every relative distance -(length - 1) .. length - 1 (index d + length - 1), as
    transformers' `make_log_bucket_position` computes it (float32, in its order of operations): distances
    inside +-bucket_size/2 stay themselves, farther ones grow logarithmically up to max_position."""
    rel = np.arange(-(length - 1), length, dtype=np.int64)
    if bucket_size <= 0 or max_position <= 0:
        return rel
    mid = bucket_size // 2
    abs_pos = np.where((rel < mid) & (rel > -mid), mid - 1, np.abs(rel)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):  # the near distances are not read from log_pos
        log_pos = np.ceil(np.log(abs_pos / np.float32(mid)) / np.log(np.float32((max_position - 1) / mid))
                          * np.float32(mid - 1)) + np.float32(mid)
        bucket = np.where(abs_pos <= mid, rel.astype(np.float32), log_pos * np.sign(rel).astype(np.float32))
    return bucket.astype(np.int64)


class BiasFreeLinear(keras.layers.Layer):
    """PyTorch's `nn.Linear(in_features, units, bias=False)`: `kernel` [in, out] (transposed on load/save)."""

    def __init__(self, in_features: int, units: int, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.in_features, self.units, self.initializer_range = in_features, units, initializer_range
        self.kernel = self.add_weight(shape=(in_features, units), initializer=weight_initializer(initializer_range),
                                      name="kernel")
        self.built = True

    def call(self, x):
        shape = tf.shape(x)
        y = tf.matmul(tf.reshape(x, (-1, self.in_features)), self.kernel)  # (N, in) @ (in, out) -> (N, out)
        return tf.reshape(y, tf.concat([shape[:-1], [self.units]], 0))  # (N, out) -> (..., out)

    def get_config(self):
        return {**super().get_config(), "in_features": self.in_features, "units": self.units,
                "initializer_range": self.initializer_range}


class DebertaV2Embeddings(ConfigLayer):
    """word (+ absolute position) (+ token type) embeddings -> embed_proj -> LayerNorm -> zeroed at padding."""

    def __init__(self, config: DebertaV2Config, **kwargs):
        super().__init__(config, **kwargs)
        c, e = config, config.embedding_width
        self.word_embeddings = Embedding(c.vocab_size, e, c.initializer_range, name="word_embeddings")
        if c.position_biased_input:
            self.position_embeddings = Embedding(c.max_position_embeddings, e, c.initializer_range,
                                                 name="position_embeddings")
        if c.type_vocab_size > 0:
            self.token_type_embeddings = Embedding(c.type_vocab_size, e, c.initializer_range,
                                                   name="token_type_embeddings")
        if e != c.hidden_size:
            self.embed_proj = BiasFreeLinear(e, c.hidden_size, c.initializer_range, name="embed_proj")
        self.LayerNorm = LayerNorm(c.hidden_size, c.layer_norm_eps)
        self.dropout = keras.layers.Dropout(c.hidden_dropout_prob)

    def call(self, input_ids, token_type_ids, real, training=False):
        """input_ids, token_type_ids: (B, T); real: float (B, T), 1 at tokens and 0 at padding -> (B, T, C)."""
        x = words = hook("hook_embed", self.word_embeddings(input_ids))  # (B, T, E)
        if hasattr(self, "position_embeddings"):
            x = x + hook("hook_pos_embed", self.position_embeddings.embeddings[:tf.shape(input_ids)[1]],
                         broadcast_like=words)  # (T, E), broadcast over the batch
        if hasattr(self, "token_type_embeddings"):
            x = x + hook("hook_token_type_embed", self.token_type_embeddings(token_type_ids))  # (B, T, E)
        if hasattr(self, "embed_proj"):
            x = self.embed_proj(x)  # (B, T, E) -> (B, T, C)
        x = self.LayerNorm(x) * tf.expand_dims(real, -1)  # (B, T, 1): padding rows are zero from here on
        return hook("hook_full_embed", self.dropout(x, training=training))


class DisentangledSelfAttention(ConfigLayer):
    """q.k, plus the c2p and p2c terms over relative positions, all scaled by sqrt(D * (1 + terms))."""

    def __init__(self, config: DebertaV2Config, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.query_proj = Linear(c.hidden_size, c.hidden_size, c.initializer_range, name="query_proj")
        self.key_proj = Linear(c.hidden_size, c.hidden_size, c.initializer_range, name="key_proj")
        self.value_proj = Linear(c.hidden_size, c.hidden_size, c.initializer_range, name="value_proj")
        self.terms = [kind for kind in ("c2p", "p2c") if kind in c.pos_att_type]
        if c.relative_attention and not c.share_att_key:
            if "c2p" in self.terms:
                self.pos_key_proj = Linear(c.hidden_size, c.hidden_size, c.initializer_range, name="pos_key_proj")
            if "p2c" in self.terms:
                self.pos_query_proj = Linear(c.hidden_size, c.hidden_size, c.initializer_range, name="pos_query_proj")
        self.pos_dropout = keras.layers.Dropout(c.hidden_dropout_prob)
        self.dropout = keras.layers.Dropout(c.attention_probs_dropout_prob)

    def call(self, x, attn_mask, rel_embeddings=None, c2p_index=None, p2c_index=None, training=False):
        """x: (B, T, C); attn_mask: additive (B, 1, T, T); rel_embeddings: (2S, C); c2p_index, p2c_index: (T, T)
        flat indices into a (T, 2S) score table. Returns (B, T, C) and probabilities (B, H, T, T)."""
        c = self.config
        H = c.num_attention_heads
        B, T, C = tf.shape(x)[0], tf.shape(x)[1], x.shape[-1]
        D = C // H

        def heads(t, name):  # (B, T, C) -> (B, T, H, D), a hook point -> (B, H, T, D)
            return tf.transpose(hook(name, tf.reshape(t, (B, T, H, D))), (0, 2, 1, 3))

        q, k, v = (heads(self.query_proj(x), "attn.hook_q"), heads(self.key_proj(x), "attn.hook_k"),
                   heads(self.value_proj(x), "attn.hook_v"))
        scale = math.sqrt(D * (1 + len(self.terms)))
        scores = tf.matmul(q, k, transpose_b=True) / scale  # (B, H, T, D) @ (B, H, D, T) -> (B, H, T, T)
        if c.relative_attention and self.terms:
            scores += self.relative_scores(q, k, self.pos_dropout(rel_embeddings, training=training),
                                           c2p_index, p2c_index) / scale
        scores = hook("attn.hook_attn_scores", scores + attn_mask)  # every term, scaled and masked
        probs = hook("attn.hook_pattern", tf.nn.softmax(scores, axis=-1))  # over keys
        context = tf.matmul(self.dropout(probs, training=training), v)  # (B, H, T, T) @ (B, H, T, D) -> (B, H, T, D)
        context = hook("attn.hook_z", tf.transpose(context, (0, 2, 1, 3)))  # (B, H, T, D) -> (B, T, H, D)
        return tf.reshape(context, (B, T, C)), probs  # (B, T, H, D) -> (B, T, C)

    def relative_scores(self, q, k, rel, c2p_index, p2c_index):
        """The unscaled c2p + p2c terms (B, H, T, T); rel: (2S, C), the (normalised) relative-position table."""
        c = self.config
        H, C = c.num_attention_heads, c.hidden_size
        B, T, S2 = tf.shape(q)[0], tf.shape(q)[2], tf.shape(rel)[0]

        def pos_heads(t):  # (2S, C) -> (H, 2S, D), shared by every sequence of the batch
            return tf.transpose(tf.reshape(t, (S2, H, C // H)), (1, 0, 2))

        def pick(table, index):  # (B, H, T, 2S) scores by bucket -> (B, H, T, T) by key, at flat (row, bucket) indices
            return tf.gather(tf.reshape(table, (B, H, T * S2)), index, axis=2)  # (B, H, T * 2S) at (T, T) -> (B, H, T, T)

        score = 0.0
        if "c2p" in self.terms:  # query i against key j's distance: q_i . Pk[bucket(i - j) + S]
            pos_key = pos_heads((self.key_proj if c.share_att_key else self.pos_key_proj)(rel))
            score += pick(tf.matmul(q, pos_key, transpose_b=True), c2p_index)  # (B, H, T, D) @ (H, D, 2S) -> (B, H, T, 2S)
        if "p2c" in self.terms:  # key j against query i's distance: k_j . Pq[bucket(i - j) + S]
            pos_query = pos_heads((self.query_proj if c.share_att_key else self.pos_query_proj)(rel))
            score += pick(tf.matmul(k, pos_query, transpose_b=True), p2c_index)  # (B, H, T, D) @ (H, D, 2S) -> (B, H, T, 2S)
        return score


class DebertaV2Attention(ConfigLayer):
    """self (disentangled attention) -> output (dense -> dropout -> LayerNorm(. + residual)), as BERT's."""

    def __init__(self, config: DebertaV2Config, **kwargs):
        super().__init__(config, **kwargs)
        self.self = DisentangledSelfAttention(config, name="self")
        self.output_ = BertAddNorm(config, config.hidden_size, sublayer="attn", name="output")

    def call(self, x, attn_mask, rel_embeddings=None, c2p_index=None, p2c_index=None, training=False):
        context, probs = self.self(x, attn_mask=attn_mask, rel_embeddings=rel_embeddings, c2p_index=c2p_index,
                                   p2c_index=p2c_index, training=training)
        return self.output_(context, residual=x, training=training), probs


class DebertaV2Layer(ConfigLayer):
    """BERT's block around the disentangled attention."""

    def __init__(self, config: DebertaV2Config, **kwargs):
        super().__init__(config, **kwargs)
        self.attention = DebertaV2Attention(config, name="attention")
        self.intermediate = BertIntermediate(config, name="intermediate")
        self.output_ = BertAddNorm(config, config.intermediate_size, sublayer="mlp", name="output")

    def call(self, x, attn_mask, rel_embeddings=None, c2p_index=None, p2c_index=None, training=False):
        x, probs = self.attention(x, attn_mask=attn_mask, rel_embeddings=rel_embeddings, c2p_index=c2p_index,
                                  p2c_index=p2c_index, training=training)
        return self.output_(self.intermediate(x), residual=x, training=training), probs

    def attention_linears(self):
        """(query, key, value, output) `Linear`s, for the per-head weight views (`interp.attention_weights`)."""
        a = self.attention
        return a.self.query_proj, a.self.key_proj, a.self.value_proj, a.output_.dense


class ConvLayer(ConfigLayer):
    """`encoder.conv`: a width-`conv_kernel_size` convolution over the embeddings, zeroed at padding, then
    `conv_act`, added to the first layer's output -> LayerNorm -> zeroed at padding."""

    def __init__(self, config: DebertaV2Config, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.act = get_activation(c.conv_act)
        self.conv = Conv1d(c.hidden_size, c.conv_kernel_size, c.initializer_range, name="conv")
        self.LayerNorm = LayerNorm(c.hidden_size, c.layer_norm_eps)
        self.dropout = keras.layers.Dropout(c.hidden_dropout_prob)

    def call(self, embeddings, residual, real, training=False):
        """embeddings, residual: (B, T, C); real: float (B, T), 1 at tokens -> (B, T, C)."""
        real = tf.expand_dims(real, -1)  # (B, T, 1)
        out = self.act(self.dropout(self.conv(embeddings) * real, training=training))
        return self.LayerNorm(residual + out) * real


class Conv1d(keras.layers.Layer):
    """PyTorch's `nn.Conv1d(C, C, k, padding=(k - 1) // 2)`: `weight` kept in the Hub's (out, in, k) layout."""

    def __init__(self, channels: int, kernel_size: int, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.kernel_size, self.initializer_range = channels, kernel_size, initializer_range
        self.weight = self.add_weight(shape=(channels, channels, kernel_size),
                                      initializer=weight_initializer(initializer_range), name="weight")
        self.bias = self.add_weight(shape=(channels,), initializer="zeros", name="bias")
        self.built = True

    def call(self, x):
        kernel = tf.transpose(self.weight, (2, 1, 0))  # (out, in, k) -> (k, in, out), TensorFlow's layout
        # An odd width with "SAME" pads (k - 1) / 2 on each side, as PyTorch's padding does.
        return tf.nn.bias_add(tf.nn.conv1d(x, kernel, stride=1, padding="SAME"), self.bias)  # (B, T, C)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "kernel_size": self.kernel_size,
                "initializer_range": self.initializer_range}


class DebertaV2Encoder(ConfigLayer):
    """`layer[i]` with the relative-position table (`rel_embeddings`, its `LayerNorm`) and bucket indices
    computed once for all layers, and the optional `conv` after layer 0."""

    def __init__(self, config: DebertaV2Config, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.layer = [DebertaV2Layer(c, name=f"layer_{i}") for i in range(c.num_hidden_layers)]
        if c.relative_attention:
            self.rel_embeddings = Embedding(2 * c.pos_ebd_size, c.hidden_size, c.initializer_range, name="rel_embeddings")
            self._buckets = log_bucket_table(c.max_sequence_length, c.position_buckets, c.relative_span).astype(np.int32)
        if "layer_norm" in [x.strip() for x in c.norm_rel_ebd.lower().split("|")]:
            self.LayerNorm = LayerNorm(c.hidden_size, c.layer_norm_eps)
        if c.conv_kernel_size > 0:
            self.conv = ConvLayer(c, name="conv")

    def relative_inputs(self, T) -> dict:
        """The normalised table (2S, C) and, for a length T, where each (query, key) score sits in the (T, 2S)
        tables of c2p and p2c scores: flat indices (T, T)."""
        c = self.config
        if not c.relative_attention:
            return {}
        rel = self.rel_embeddings.embeddings  # (2S, C)
        if hasattr(self, "LayerNorm"):
            rel = self.LayerNorm(rel)
        S = c.pos_ebd_size
        i = tf.range(T)
        query, key = tf.expand_dims(i, 1), tf.expand_dims(i, 0)  # (T, 1), (1, T)
        distance = query - key  # (T, T): query - key
        r = tf.gather(self._buckets, distance + c.max_sequence_length - 1)  # (T, T) buckets of query - key
        rows = query * (2 * S)  # (T, 1): start of query i's row in the flat (T * 2S) table
        cols = key * (2 * S)  # (1, T): start of key j's row
        c2p = rows + tf.clip_by_value(r + S, 0, 2 * S - 1)  # query i's score at bucket(i - j) + S
        p2c = cols + tf.clip_by_value(r + S, 0, 2 * S - 1)  # key j's score at -bucket(j - i) + S = bucket(i - j) + S
        return {"rel_embeddings": rel, "c2p_index": c2p, "p2c_index": p2c}

    def call(self, x, real, training=False):
        """x: (B, T, C) embeddings; real: float (B, T), 1 at tokens. Returns [embeddings, layer 0, ...] and each
        layer's (B, H, T, T)."""
        # expand_dims, not [:, None]: the LiteRT converter cannot lower new-axis slices at open shapes
        keys = tf.expand_dims(real, 1)  # (B, 1, T)
        pair = tf.expand_dims(keys, 3) * tf.expand_dims(keys, 2)  # (B, 1, T, T): both query and key are real tokens
        attn_mask = (1.0 - pair) * tf.float32.min
        relative = self.relative_inputs(tf.shape(x)[1])
        hidden, attentions = [x], []
        for i, block in enumerate(self.layer):
            with hook_block(i):  # hook names as LayerStack's; the conv comes before hook_normalized_resid_post
                x = hook("hook_resid_pre", x)
                x, probs = block(x, attn_mask=attn_mask, training=training, **relative)
                if i == 0 and hasattr(self, "conv"):
                    x = self.conv(hidden[0], x, real, training=training)
                x = hook("hook_normalized_resid_post", x)
            hidden.append(x)
            attentions.append(probs)
        return hidden, attentions


class DebertaV2Model(PreTrainedModel):
    """embeddings -> encoder: `last_hidden_state` (no pooler: the classifiers hold theirs)."""

    config_class = DebertaV2Config
    base_model_prefix = "deberta"

    def __init__(self, config: DebertaV2Config | None = None, **kwargs):
        super().__init__(config, **kwargs)
        self.embeddings = DebertaV2Embeddings(self.config, name="embeddings")
        self.encoder = DebertaV2Encoder(self.config, name="encoder")
        self.build()

    def call(self, input_ids, attention_mask, token_type_ids, output_hidden_states=False,
             output_attentions=False, training=False):
        real = tf.cast(attention_mask, tf.float32)  # (B, T)
        x = self.embeddings(input_ids, token_type_ids=token_type_ids, real=real, training=training)  # (B, T, C)
        hidden, attentions = self.encoder(x, real=real, training=training)
        return encoder_output(BaseModelOutput, hidden, attentions, output_hidden_states, output_attentions)

    def head_input(self, hidden):
        """For `trace`: what a classifier on this encoder reads, from the last hidden state (B, T, C)."""
        return hidden[:, 0], "[CLS] hidden state"


class ContextPooler(ConfigLayer):
    """`pooler`: [CLS] -> dropout -> dense + pooler_hidden_act."""

    def __init__(self, config: DebertaV2Config, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.dense = Linear(c.hidden_size, c.hidden_size, c.initializer_range, c.pooler_hidden_act, name="dense")
        self.dropout = keras.layers.Dropout(c.pooler_dropout)

    def call(self, hidden, training=False):
        return self.dense(self.dropout(hidden[:, 0], training=training))  # (B, T, C) -> (B, C)


class DebertaV2PreTrainedModel(HeadModel):
    """The body under `deberta`; the classifiers pool through `pooler` (ContextPooler)."""

    config_class = DebertaV2Config
    base_model_prefix = "deberta"
    pool_description = "[CLS] hidden state -> pooler (dense + pooler_hidden_act)"

    def make_body(self, with_pooler):
        return DebertaV2Model(self.config, name="deberta")

    @property
    def classifier_dropout(self) -> float:
        c = self.config
        return c.cls_dropout if c.cls_dropout is not None else c.hidden_dropout_prob

    @property
    def token_dropout(self) -> float:
        return self.config.hidden_dropout_prob

    def build_pool(self, c):
        self.pooler = ContextPooler(c, name="pooler")

    def pooled_from(self, hidden):
        return self.pooler(hidden)  # (B, T, C) -> (B, C)


class DebertaV2ForSequenceClassification(ForSequenceClassification, DebertaV2PreTrainedModel):
    """pooler ([CLS] -> dense + pooler_hidden_act) -> dropout (cls_dropout) -> classifier."""


class DebertaV2ForMultipleChoice(ForMultipleChoice, DebertaV2PreTrainedModel):
    """Per choice: pooler -> dropout -> classifier (hidden -> 1)."""


class DebertaV2ForTokenClassification(ForTokenClassification, DebertaV2PreTrainedModel):
    """Per token: last hidden state -> dropout -> classifier (hidden -> num_labels)."""


class DebertaV2ForQuestionAnswering(ForQuestionAnswering, DebertaV2PreTrainedModel):
    """Per token: last hidden state -> qa_outputs (hidden -> 2) -> start and end logits."""


class LegacyDebertaV2PredictionHeadTransform(ConfigLayer):
    """`cls.predictions.transform`: dense (hidden -> embedding_size) + hidden_act -> LayerNorm."""

    def __init__(self, config: DebertaV2Config, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.dense = Linear(c.hidden_size, c.embedding_width, c.initializer_range, c.hidden_act, name="dense")
        self.LayerNorm = LayerNorm(c.embedding_width, c.layer_norm_eps)

    def call(self, x):
        return self.LayerNorm(self.dense(x))  # (B, T, C) -> (B, T, E)


class LegacyDebertaV2LMPredictionHead(TiedDecoder):
    """`cls.predictions`: transform, then the decoder tied to the word embeddings, with its own bias."""

    def __init__(self, config: DebertaV2Config, word_embeddings, **kwargs):
        super().__init__(word_embeddings, **kwargs)
        self.transform = LegacyDebertaV2PredictionHeadTransform(config, name="transform")

    def call(self, x):
        return self.decode(self.transform(x))  # (B, T, C) -> (B, T, vocab)


class DebertaV2LMPredictionHead(TiedDecoder):
    """`lm_predictions.lm_head`: dense + hidden_act -> LayerNorm -> the word embeddings + `bias`."""

    def __init__(self, config: DebertaV2Config, word_embeddings, **kwargs):
        super().__init__(word_embeddings, **kwargs)
        c = config
        self.dense = Linear(c.hidden_size, c.hidden_size, c.initializer_range, c.hidden_act, name="dense")
        self.LayerNorm = LayerNorm(c.hidden_size, c.layer_norm_eps)

    def call(self, x):
        return self.decode(self.LayerNorm(self.dense(x)))  # (B, T, C) -> (B, T, vocab)


class _Holder(keras.layers.Layer):
    """A module that only holds one sub-module, so that the Hub names read `cls.predictions.*` or
    `lm_predictions.lm_head.*`."""

    def __init__(self, attr: str, inner, **kwargs):
        super().__init__(**kwargs)
        self.attr = attr
        setattr(self, attr, inner)

    def call(self, x):
        return getattr(self, self.attr)(x)


class DebertaV2ForMaskedLM(ForMaskedLM, DebertaV2PreTrainedModel):
    """Per token: the LM head (legacy `cls.predictions`, or `lm_predictions.lm_head` when the config says
    legacy=false) -> logits over the vocabulary, through the word embeddings."""

    tied_weights = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias", "lm_predictions.lm_head.weight")

    def build_head(self, c):
        embeddings = self.body.embeddings.word_embeddings
        if c.legacy:
            self.cls = _Holder("predictions", LegacyDebertaV2LMPredictionHead(c, embeddings, name="predictions"),
                               name="cls")
        else:
            self.lm_predictions = _Holder("lm_head", DebertaV2LMPredictionHead(c, embeddings, name="lm_head"),
                                          name="lm_predictions")

    def lm_logits(self, hidden):
        return (self.cls if self.config.legacy else self.lm_predictions)(hidden)
