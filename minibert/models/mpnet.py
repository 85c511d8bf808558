"""MPNet, as differences from BERT (`models/bert.py`).

Mirrors transformers' `models/mpnet/modeling_mpnet.py`. The feed-forward half of each block and the pooler
are BERT's; what differs is stated here:
- no token types; positions come from the ids as RoBERTa's do, counted from token id 1 (transformers
  hard-codes that padding index, whatever `pad_token_id` says);
- a relative position bias: one (buckets, heads) table in the encoder (`encoder.relative_attention_bias`),
  looked up once per forward by the bucketed distance between query and key positions, and added to
  every layer's attention scores;
- the attention module is `attention.attn.{q,k,v,o}` then `attention.LayerNorm` (BERT's `self`/`output` split
  differently, same maths);
- the sequence classifier is RoBERTa's head (`classifier.dense -> tanh -> classifier.out_proj` on `<s>`) and the
  LM head RoBERTa's (`lm_head.dense -> gelu -> lm_head.layer_norm -> decoder` (tied) + `lm_head.bias`);
- every head's dropout is `hidden_dropout_prob` (MPNet's config has no `classifier_dropout`).
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from ..config import MPNetConfig
from ..heads import ForMaskedLM, ForMultipleChoice, ForQuestionAnswering, ForSequenceClassification, ForTokenClassification
from ..interp import attention_output, hook
from ..layers import (ConfigLayer, Embedding, LayerNorm, LayerStack, Linear, additive_attention_mask,
                      multi_head_attention)
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutputWithPooling, encoder_output
from .bert import BertAddNorm, BertIntermediate, BertPooler, BertPreTrainedModel
from .roberta import RobertaClassificationHead, RobertaLMHead


class MPNetEmbeddings(ConfigLayer):
    """word + position embeddings (positions counted from the non-pad tokens) -> LayerNorm -> dropout."""

    def __init__(self, config: MPNetConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.word_embeddings = Embedding(c.vocab_size, c.hidden_size, c.initializer_range, name="word_embeddings")
        self.position_embeddings = Embedding(c.max_position_embeddings, c.hidden_size, c.initializer_range,
                                             name="position_embeddings")
        self.LayerNorm = LayerNorm(c.hidden_size, c.layer_norm_eps)
        self.dropout = keras.layers.Dropout(c.hidden_dropout_prob)

    def call(self, input_ids, training=False):
        """input_ids: (B, T) -> (B, T, C)."""
        pad = self.config.padding_idx
        real = tf.cast(tf.not_equal(input_ids, pad), tf.int32)  # (B, T): 1 for every token but id 1
        positions = tf.cumsum(real, axis=1) * real + pad  # (B, T): 2, 3, ... ; pads stay at 1
        x = hook("hook_embed", self.word_embeddings(input_ids)) + hook("hook_pos_embed", self.position_embeddings(positions))  # (B, T, C)
        return hook("hook_full_embed", self.dropout(self.LayerNorm(x), training=training))


class MPNetSelfAttention(ConfigLayer):
    """`attention.attn`: q, k, v -> scaled dot-product attention (plus the mask and position bias) -> o."""

    def __init__(self, config: MPNetConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.q = Linear(c.hidden_size, c.hidden_size, c.initializer_range, name="q")
        self.k = Linear(c.hidden_size, c.hidden_size, c.initializer_range, name="k")
        self.v = Linear(c.hidden_size, c.hidden_size, c.initializer_range, name="v")
        self.o = Linear(c.hidden_size, c.hidden_size, c.initializer_range, name="o")
        self.dropout = keras.layers.Dropout(c.attention_probs_dropout_prob)

    def call(self, x, attn_mask, training=False):
        """x: (B, T, C); attn_mask: the additive mask plus the position bias, (B, H, T, T)."""
        context, probs = multi_head_attention(self.q(x), self.k(x), self.v(x), attn_mask,
                                              self.config.num_attention_heads, self.dropout, training)
        out = attention_output(self.o, context, self.config.num_attention_heads)
        return hook("hook_attn_out", out), probs  # (B, T, C), (B, H, T, T)


class MPNetAttention(ConfigLayer):
    """attn -> dropout -> LayerNorm(. + residual)."""

    def __init__(self, config: MPNetConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.attn = MPNetSelfAttention(config, name="attn")
        self.LayerNorm = LayerNorm(config.hidden_size, config.layer_norm_eps)
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def call(self, x, attn_mask, training=False):
        y, probs = self.attn(x, attn_mask=attn_mask, training=training)
        x = hook("ln1.hook_in", self.dropout(y, training=training) + x)
        return hook("hook_resid_mid", self.LayerNorm(x)), probs


class MPNetLayer(ConfigLayer):
    """attention (+ add & norm) -> intermediate (dense + activation) -> output (dense + add & norm), as BERT's."""

    def __init__(self, config: MPNetConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.attention = MPNetAttention(config, name="attention")
        self.intermediate = BertIntermediate(config, name="intermediate")
        self.output_ = BertAddNorm(config, config.intermediate_size, sublayer="mlp", name="output")

    def call(self, x, attn_mask, training=False):
        x, probs = self.attention(x, attn_mask=attn_mask, training=training)
        return self.output_(self.intermediate(x), residual=x, training=training), probs

    def attention_linears(self):
        """(query, key, value, output) `Linear`s, for the per-head weight views (`interp.attention_weights`)."""
        a = self.attention.attn
        return a.q, a.k, a.v, a.o


def relative_position_buckets(max_distance_rows: int, num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """transformers' `MPNetEncoder.relative_position_bucket` for every query - key distance d in
    [-(n - 1), n - 1]: the bucket of d is at index d + n - 1. Half the buckets are for keys after the query;
    of each half, distances below a quarter of the buckets get one bucket each, longer ones share
    logarithmically wider buckets up to `max_distance`. Computed in float32 as PyTorch does, so the
    distances on a bucket boundary (16, 32, 64) land where they land there."""
    n = max_distance_rows
    d = np.arange(-(n - 1), n, dtype=np.int64)  # query position - key position
    half = num_buckets // 2
    exact = half // 2
    far = np.abs(d)
    ret = np.where(d < 0, half, 0)  # keys after the query use the upper half
    far_f = np.maximum(far, 1).astype(np.float32)  # 1 for 0: no log(0); distances below `exact` do not use it
    log_ratio = np.log(far_f / np.float32(exact)) / np.float32(math.log(max_distance / exact))
    large = exact + (log_ratio * np.float32(half - exact)).astype(np.int64)
    large = np.minimum(large, half - 1)
    return ret + np.where(far < exact, far, large)  # (2n - 1,)


class MPNetEncoder(LayerStack):
    """`encoder`: `layer[0..L-1]` (MPNetLayer) and `relative_attention_bias`, a (buckets, heads) table.

    The bias depends only on the sequence length: it is computed once here and added to the additive
    padding mask, which every layer adds to its scores, so it is added to every layer's scores exactly as
    transformers adds `position_bias` (before the mask; adding 0 or float32.min after it changes nothing).
    """

    def __init__(self, config: MPNetConfig, **kwargs):
        super().__init__(config, MPNetLayer, config.num_hidden_layers, **kwargs)
        c = config
        self.relative_attention_bias = Embedding(c.relative_attention_num_buckets, c.num_attention_heads,
                                                 c.initializer_range, name="relative_attention_bias")
        # bucket of every distance a sequence of up to max_position_embeddings tokens has
        self.buckets = relative_position_buckets(c.max_position_embeddings, c.position_buckets).astype(np.int32)

    get_config = ConfigLayer.get_config
    from_config = classmethod(ConfigLayer.from_config.__func__)

    def position_bias(self, T):
        """(1, H, T, T): the bias of query i to key j, by the bucket of i - j."""
        n = self.config.max_position_embeddings
        pos = tf.range(T)
        # reshapes, not x[:, None]: a slice that adds axes does not convert to LiteRT with open shapes
        distance = tf.reshape(pos, (-1, 1)) - tf.reshape(pos, (1, -1)) + (n - 1)  # (T, T): index into the buckets table
        bias = tf.gather(self.relative_attention_bias.embeddings, tf.gather(self.buckets, distance))  # (T, T, H)
        H = self.config.num_attention_heads
        return tf.reshape(tf.transpose(bias, (2, 0, 1)), (1, H, T, T))  # (T, T, H) -> (H, T, T) -> (1, H, T, T)

    def call(self, x, attn_mask, training=False):
        """x: (B, T, C); attn_mask: additive (B, 1, 1, T). Returns [embeddings, layer 0, ...] and each layer's (B, H, T, T)."""
        return super().call(x, attn_mask=attn_mask + self.position_bias(tf.shape(x)[1]), training=training)  # (B, H, T, T)


class MPNetModel(PreTrainedModel):
    """embeddings -> the encoder (with its relative position bias) -> BERT's pooler (dense + tanh on <s>)."""

    config_class = MPNetConfig
    base_model_prefix = "mpnet"

    def __init__(self, config: MPNetConfig | None = None, add_pooling_layer: bool = True, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        self.embeddings = MPNetEmbeddings(c, name="embeddings")
        self.encoder = MPNetEncoder(c, name="encoder")
        self.pooler = BertPooler(c, name="pooler") if add_pooling_layer else None
        self.build()

    def get_config(self):
        return {**super().get_config(), "add_pooling_layer": self.pooler is not None}

    def call(self, input_ids, attention_mask, token_type_ids=None, output_hidden_states=False,
             output_attentions=False, training=False):
        x = self.embeddings(input_ids, training=training)  # (B, T, C); MPNet has no token types
        hidden, attentions = self.encoder(x, attn_mask=additive_attention_mask(attention_mask), training=training)
        pooled = self.pooler(hidden[-1]) if self.pooler is not None else None
        return encoder_output(BaseModelOutputWithPooling, hidden, attentions, output_hidden_states, output_attentions,
                              pooler_output=pooled)

    def head_input(self, hidden):
        """For `trace`: what a classifier on this encoder reads, from the last hidden state (B, T, C)."""
        if self.pooler is None:
            return hidden[:, 0], "<s> hidden state"
        return self.pooler(hidden), "pooler output (dense + tanh on <s>)"


class MPNetPreTrainedModel(BertPreTrainedModel):
    config_class = MPNetConfig
    base_model_prefix = "mpnet"
    pool_description = "pooler output (dense + tanh on <s>)"

    def make_body(self, with_pooler):
        return MPNetModel(self.config, add_pooling_layer=with_pooler, name="mpnet")

    @property
    def classifier_dropout(self) -> float:
        return self.config.hidden_dropout_prob

    token_dropout = classifier_dropout


class MPNetForSequenceClassification(ForSequenceClassification, MPNetPreTrainedModel):
    """<s> hidden state -> classifier (dense -> tanh -> out_proj), RoBERTa's head; no pooler."""

    uses_pooler = False
    pool_description = "<s> hidden state -> classifier.dense -> tanh"

    def build_head(self, c):
        self.classifier = RobertaClassificationHead(c, self.classifier_dropout, name="classifier")

    def head(self, out, training=False):
        return {"logits": self.classifier(out.last_hidden_state, training=training)}

    def pooled_from(self, hidden):
        return self.classifier.features(hidden)


class MPNetForMultipleChoice(ForMultipleChoice, MPNetPreTrainedModel):
    """Per choice: pooler_output -> dropout -> classifier (hidden -> 1), as BERT's."""


class MPNetForTokenClassification(ForTokenClassification, MPNetPreTrainedModel):
    """Per token: last hidden state -> dropout -> classifier (hidden -> num_labels)."""


class MPNetForQuestionAnswering(ForQuestionAnswering, MPNetPreTrainedModel):
    """Per token: last hidden state -> qa_outputs (hidden -> 2) -> start and end logits."""


class MPNetForMaskedLM(ForMaskedLM, MPNetPreTrainedModel):
    """Per token: lm_head (RoBERTa's: dense -> gelu -> layer_norm -> tied decoder + bias) -> logits."""

    tied_weights = ("lm_head.decoder.weight", "lm_head.decoder.bias")

    def build_head(self, c):
        self.lm_head = RobertaLMHead(c, self.body.embeddings.word_embeddings, name="lm_head")

    def lm_logits(self, hidden):
        return self.lm_head(hidden)
