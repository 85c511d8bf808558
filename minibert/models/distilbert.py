"""DistilBERT, top to bottom: embeddings -> transformer blocks -> model -> heads.

Mirrors transformers' `models/distilbert/modeling_distilbert.py`. Attribute names are the PyTorch
module names (`q_lin`, `sa_layer_norm`, `transformer.layer[i]`), so every Hub weight name falls out
of the layer tree (see `checkpoint.hub_variables`).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..config import DistilBertConfig
from ..heads import (ForMaskedLM, ForMultipleChoice, ForQuestionAnswering, ForSequenceClassification,
                     ForTokenClassification, HeadModel)
from ..interp import attention_output, hook, linear_with_activation
from ..layers import (ConfigLayer, Embedding, LayerNorm, LayerStack, Linear, TiedDecoder, additive_attention_mask,
                      multi_head_attention)
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, encoder_output

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
        self.word_embeddings = Embedding(c.vocab_size, c.dim, c.initializer_range, name="word_embeddings")
        self.position_embeddings = Embedding(c.max_position_embeddings, c.dim, c.initializer_range,
                                             name="position_embeddings")
        if c.sinusoidal_pos_embds:  # a fixed table, not learned (written to checkpoints all the same)
            self.position_embeddings.embeddings.assign(sinusoidal_positions(c.max_position_embeddings, c.dim))
        self.LayerNorm = LayerNorm(c.dim, LN_EPS)
        self.dropout = keras.layers.Dropout(c.dropout)

    def call(self, input_ids, training=False):
        """input_ids: (B, T) -> (B, T, dim)."""
        T = tf.shape(input_ids)[1]
        words = hook("hook_embed", self.word_embeddings(input_ids))  # (B, T, C)
        x = words + hook("hook_pos_embed", self.position_embeddings.embeddings[:T], broadcast_like=words)  # + (T, C)
        return hook("hook_full_embed", self.dropout(self.LayerNorm(x), training=training))


class MultiHeadSelfAttention(ConfigLayer):
    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.q_lin = Linear(c.dim, c.dim, c.initializer_range, name="q_lin")
        self.k_lin = Linear(c.dim, c.dim, c.initializer_range, name="k_lin")
        self.v_lin = Linear(c.dim, c.dim, c.initializer_range, name="v_lin")
        self.out_lin = Linear(c.dim, c.dim, c.initializer_range, name="out_lin")
        self.dropout = keras.layers.Dropout(c.attention_dropout)

    def call(self, x, attn_mask, training=False):
        """x: (B, T, C); attn_mask: additive (B, 1, 1, T). Returns (B, T, C) and probabilities (B, H, T, T)."""
        context, probs = multi_head_attention(
            self.q_lin(x), self.k_lin(x), self.v_lin(x), attn_mask, self.config.n_heads, self.dropout, training
        )
        return hook("hook_attn_out", attention_output(self.out_lin, context, self.config.n_heads)), probs


class FFN(ConfigLayer):
    """lin1 -> activation (fused into lin1, see `Linear`) -> lin2 -> dropout."""

    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.lin1 = Linear(c.dim, c.hidden_dim, c.initializer_range, c.activation, name="lin1")
        self.lin2 = Linear(c.hidden_dim, c.dim, c.initializer_range, name="lin2")
        self.dropout = keras.layers.Dropout(c.dropout)

    def call(self, x, training=False):
        h = linear_with_activation(self.lin1, x)  # (B, T, C) -> (B, T, hidden_dim)
        return self.dropout(hook("hook_mlp_out", self.lin2(h)), training=training)  # -> (B, T, C)


class TransformerBlock(ConfigLayer):
    """Post-norm block: x = LN(x + attn(x)); x = LN(x + ffn(x)). Hook names as BERT's (`interp`)."""

    def __init__(self, config: DistilBertConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.attention = MultiHeadSelfAttention(config, name="attention")
        self.sa_layer_norm = LayerNorm(config.dim, LN_EPS, name="sa_layer_norm")
        self.ffn = FFN(config, name="ffn")
        self.output_layer_norm = LayerNorm(config.dim, LN_EPS, name="output_layer_norm")

    def call(self, x, attn_mask, training=False):
        """x: (B, T, C); attn_mask: additive (B, 1, 1, T)."""
        attn, probs = self.attention(x, attn_mask=attn_mask, training=training)
        x = hook("hook_resid_mid", self.sa_layer_norm(hook("ln1.hook_in", attn + x)))
        x = hook("hook_resid_post", self.output_layer_norm(hook("ln2.hook_in", self.ffn(x, training=training) + x)))
        return x, probs

    def attention_linears(self):
        """(query, key, value, output) `Linear`s, for the per-head weight views (`interp.attention_weights`)."""
        a = self.attention
        return a.q_lin, a.k_lin, a.v_lin, a.out_lin


class DistilBertModel(PreTrainedModel):
    """The bare encoder: `last_hidden_state` (B, T, dim), optional `hidden_states` and `attentions`."""

    config_class = DistilBertConfig
    base_model_prefix = "distilbert"

    def __init__(self, config: DistilBertConfig | None = None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        self.embeddings = Embeddings(c, name="embeddings")
        self.transformer = LayerStack(c, TransformerBlock, c.n_layers, name="transformer")
        self.build()

    def call(self, input_ids, attention_mask, token_type_ids=None, output_hidden_states=False,
             output_attentions=False, training=False):
        x = self.embeddings(input_ids, training=training)  # (B, T, dim); DistilBERT ignores token types
        hidden, attentions = self.transformer(x, attn_mask=additive_attention_mask(attention_mask), training=training)
        return encoder_output(BaseModelOutput, hidden, attentions, output_hidden_states, output_attentions)

    def head_input(self, hidden):
        """For `trace`: what a classifier on this encoder reads, from the last hidden state (B, T, C)."""
        return hidden[:, 0], "[CLS] hidden state"

    def fixed_weights(self):
        return {"embeddings.position_embeddings.weight"} if self.config.sinusoidal_pos_embds else set()


class DistilBertPreTrainedModel(HeadModel):
    """What every DistilBERT head shares: the body (no pooler), and its classifiers' input, the [CLS]
    hidden state through `pre_classifier` and ReLU."""

    config_class = DistilBertConfig
    base_model_prefix = "distilbert"
    pool_description = "[CLS] hidden state -> pre_classifier -> ReLU"

    def make_body(self, with_pooler):
        return DistilBertModel(self.config, name="distilbert")

    # transformers' DistilBERT heads each read their own dropout field.
    classifier_dropout = property(lambda self: self.config.seq_classif_dropout)
    token_dropout = property(lambda self: self.config.dropout)
    qa_dropout = property(lambda self: self.config.qa_dropout)

    def build_pool(self, c):
        self.pre_classifier = Linear(c.dim, c.dim, c.initializer_range, "relu", name="pre_classifier")

    def pooled_from(self, hidden):
        return self.pre_classifier(hidden[:, 0])  # (B, T, dim) -> (B, dim) at [CLS]

    def fixed_weights(self):
        return {f"distilbert.{name}" for name in self.distilbert.fixed_weights()}


class DistilBertForSequenceClassification(ForSequenceClassification, DistilBertPreTrainedModel):
    """hidden[:, 0] -> pre_classifier (dim -> dim) -> ReLU -> dropout -> classifier (dim -> num_labels)."""


class DistilBertForMultipleChoice(ForMultipleChoice, DistilBertPreTrainedModel):
    """Per choice: hidden[:, 0] -> pre_classifier -> ReLU -> dropout -> classifier (dim -> 1)."""


class DistilBertForTokenClassification(ForTokenClassification, DistilBertPreTrainedModel):
    """Per token: last hidden state -> dropout -> classifier (dim -> num_labels)."""


class DistilBertForQuestionAnswering(ForQuestionAnswering, DistilBertPreTrainedModel):
    """Per token: last hidden state -> dropout -> qa_outputs (dim -> 2) -> start and end logits."""


class DistilBertForMaskedLM(ForMaskedLM, DistilBertPreTrainedModel):
    """Per token: vocab_transform (+ activation) -> vocab_layer_norm -> vocab_projector (tied to the word
    embeddings) -> logits over the vocabulary."""

    tied_weights = ("vocab_projector.weight",)

    def build_head(self, c):
        self.vocab_transform = Linear(c.dim, c.dim, c.initializer_range, c.activation, name="vocab_transform")
        self.vocab_layer_norm = LayerNorm(c.dim, LN_EPS, name="vocab_layer_norm")
        self.vocab_projector = TiedDecoder(self.distilbert.embeddings.word_embeddings, name="vocab_projector")

    def lm_logits(self, hidden):
        return self.vocab_projector(self.vocab_layer_norm(self.vocab_transform(hidden)))  # (B, T, vocab)
