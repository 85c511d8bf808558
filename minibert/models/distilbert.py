"""DistilBERT, top to bottom: embeddings -> transformer blocks -> model -> classification head.

Mirrors transformers' `models/distilbert/modeling_distilbert.py`. Attribute names are the PyTorch
module names (`q_lin`, `sa_layer_norm`, `transformer.layer[i]`), so every Hub weight name falls out
of the layer tree (see `checkpoint.hub_variables`).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..config import DistilBertConfig
from ..layers import ConfigLayer, LayerStack, additive_attention_mask, dense, embedding, layer_norm, multi_head_attention
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, SequenceClassifierOutput

LN_EPS = 1e-12  # DistilBERT hard-codes this; it is not a config field.


def sinusoidal_positions(n_pos: int, dim: int) -> np.ndarray:
    """The fixed position table used when `sinusoidal_pos_embds` is true (sin on even, cos on odd dims)."""
    pos = np.arange(n_pos)[:, None] / np.power(10000, 2 * (np.arange(dim) // 2) / dim)[None, :]  # (n_pos, dim)
    out = np.empty((n_pos, dim), dtype=np.float32)
    out[:, 0::2], out[:, 1::2] = np.sin(pos[:, 0::2]), np.cos(pos[:, 1::2])
    return out


class Embeddings(ConfigLayer):
    """word + position embeddings -> LayerNorm -> dropout. No token types in DistilBERT."""

    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.word_embeddings = embedding(c.vocab_size, c.dim, "word_embeddings", c.initializer_range)
        self.position_embeddings = embedding(c.max_position_embeddings, c.dim, "position_embeddings", c.initializer_range)
        self.LayerNorm = layer_norm(LN_EPS)
        self.dropout = keras.layers.Dropout(c.dropout)

    def build(self, input_shape=None):
        self.word_embeddings.build((None, None))
        self.position_embeddings.build((None, None))
        self.LayerNorm.build((None, None, self.config.dim))
        if self.config.sinusoidal_pos_embds:
            c = self.config
            self.position_embeddings.embeddings.assign(sinusoidal_positions(c.max_position_embeddings, c.dim))

    def call(self, input_ids, training=False):
        T = tf.shape(input_ids)[1]
        x = self.word_embeddings(input_ids) + self.position_embeddings.embeddings[:T]  # (B, T, C) + (T, C)
        return self.dropout(self.LayerNorm(x), training=training)


class MultiHeadSelfAttention(ConfigLayer):
    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.q_lin = dense(c.dim, "q_lin", c.initializer_range)
        self.k_lin = dense(c.dim, "k_lin", c.initializer_range)
        self.v_lin = dense(c.dim, "v_lin", c.initializer_range)
        self.out_lin = dense(c.dim, "out_lin", c.initializer_range)
        self.dropout = keras.layers.Dropout(c.attention_dropout)

    def build(self, input_shape=None):
        for lin in (self.q_lin, self.k_lin, self.v_lin, self.out_lin):
            lin.build((None, None, self.config.dim))

    def call(self, x, mask, training=False):
        context, probs = multi_head_attention(
            self.q_lin(x), self.k_lin(x), self.v_lin(x), mask, self.config.n_heads, self.dropout, training
        )
        return self.out_lin(context), probs


class FFN(ConfigLayer):
    """lin1 -> activation (fused into lin1, see `Linear`) -> lin2 -> dropout."""

    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.lin1 = dense(c.hidden_dim, "lin1", c.initializer_range, c.activation)
        self.lin2 = dense(c.dim, "lin2", c.initializer_range)
        self.dropout = keras.layers.Dropout(c.dropout)

    def build(self, input_shape=None):
        self.lin1.build((None, None, self.config.dim))
        self.lin2.build((None, None, self.config.hidden_dim))

    def call(self, x, training=False):
        return self.dropout(self.lin2(self.lin1(x)), training=training)


class TransformerBlock(ConfigLayer):
    """Post-norm block: x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.attention = MultiHeadSelfAttention(config, name="attention")
        self.sa_layer_norm = layer_norm(LN_EPS, "sa_layer_norm")
        self.ffn = FFN(config, name="ffn")
        self.output_layer_norm = layer_norm(LN_EPS, "output_layer_norm")

    def build(self, input_shape=None):
        for sub in (self.attention, self.sa_layer_norm, self.ffn, self.output_layer_norm):
            sub.build((None, None, self.config.dim))

    def call(self, x, mask, training=False):
        attn, probs = self.attention(x, mask, training=training)
        x = self.sa_layer_norm(attn + x)
        x = self.output_layer_norm(self.ffn(x, training=training) + x)
        return x, probs


class Transformer(LayerStack):
    block_class = TransformerBlock
    num_layers_field = "n_layers"


class DistilBertModel(PreTrainedModel):
    """The bare encoder: `last_hidden_state` (B, T, dim), optional `hidden_states` and `attentions`."""

    config_class = DistilBertConfig
    base_model_prefix = "distilbert"

    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.embeddings = Embeddings(config, name="embeddings")
        self.transformer = Transformer(config, name="transformer")
        self._build_all()

    def call(self, input_ids, attention_mask, token_type_ids=None, output_hidden_states=False,
             output_attentions=False, training=False):
        x = self.embeddings(input_ids, training=training)  # (B, T, dim)
        hidden, attentions = self.transformer(x, additive_attention_mask(attention_mask), training=training)
        return BaseModelOutput(
            last_hidden_state=hidden[-1],
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )


class DistilBertForSequenceClassification(PreTrainedModel):
    """hidden[:, 0] -> pre_classifier (dim -> dim) -> ReLU -> dropout -> classifier (dim -> num_labels)."""

    config_class = DistilBertConfig
    base_model_prefix = "distilbert"

    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.distilbert = DistilBertModel(config, name="distilbert")
        self.pre_classifier = dense(c.dim, "pre_classifier", c.initializer_range)
        self.classifier = dense(c.num_labels, "classifier", c.initializer_range)
        self.dropout = keras.layers.Dropout(c.seq_classif_dropout)
        self._build_all()

    def build(self, input_shape=None):  # the head's own layers; the encoder built itself
        self.pre_classifier.build((None, self.config.dim))
        self.classifier.build((None, self.config.dim))

    def call(self, input_ids, attention_mask, token_type_ids=None, output_hidden_states=False,
             output_attentions=False, training=False):
        out = self.distilbert.call(input_ids, attention_mask, None, output_hidden_states, output_attentions, training)
        cls = out.last_hidden_state[:, 0]  # (B, dim): the [CLS] position
        x = self.dropout(tf.nn.relu(self.pre_classifier(cls)), training=training)
        return SequenceClassifierOutput(
            logits=self.classifier(x), hidden_states=out.hidden_states, attentions=out.attentions
        )
