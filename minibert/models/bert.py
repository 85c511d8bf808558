"""BERT, top to bottom: embeddings -> encoder layers -> pooler -> model -> classification head.

Mirrors transformers' `models/bert/modeling_bert.py`. Attribute names are the PyTorch module names
(`attention.self.query`, `intermediate.dense`, `encoder.layer[i]`), so every Hub weight name falls out
of the layer tree (see `checkpoint.hub_variables`). `self.self` below is not a typo: it is BERT's
`BertAttention.self` submodule, and the name has to match.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from ..config import BertConfig
from ..layers import ConfigLayer, LayerStack, additive_attention_mask, dense, embedding, layer_norm, multi_head_attention
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutputWithPooling, SequenceClassifierOutput


class BertEmbeddings(ConfigLayer):
    """word + position + token-type embeddings -> LayerNorm -> dropout."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.word_embeddings = embedding(c.vocab_size, c.hidden_size, "word_embeddings", c.initializer_range)
        self.position_embeddings = embedding(c.max_position_embeddings, c.hidden_size, "position_embeddings", c.initializer_range)
        self.token_type_embeddings = embedding(c.type_vocab_size, c.hidden_size, "token_type_embeddings", c.initializer_range)
        self.LayerNorm = layer_norm(c.layer_norm_eps)
        self.dropout = keras.layers.Dropout(c.hidden_dropout_prob)

    def build(self, input_shape=None):
        for emb in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings):
            emb.build((None, None))
        self.LayerNorm.build((None, None, self.config.hidden_size))

    def call(self, input_ids, token_type_ids, training=False):
        T = tf.shape(input_ids)[1]
        x = (self.word_embeddings(input_ids)  # (B, T, C)
             + self.token_type_embeddings(token_type_ids)  # (B, T, C)
             + self.position_embeddings.embeddings[:T])  # (T, C), broadcast over the batch
        return self.dropout(self.LayerNorm(x), training=training)


class BertSelfAttention(ConfigLayer):
    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.query = dense(c.hidden_size, "query", c.initializer_range)
        self.key = dense(c.hidden_size, "key", c.initializer_range)
        self.value = dense(c.hidden_size, "value", c.initializer_range)
        self.dropout = keras.layers.Dropout(c.attention_probs_dropout_prob)

    def build(self, input_shape=None):
        for lin in (self.query, self.key, self.value):
            lin.build((None, None, self.config.hidden_size))

    def call(self, x, mask, training=False):
        return multi_head_attention(self.query(x), self.key(x), self.value(x), mask,
                                    self.config.num_attention_heads, self.dropout, training)


class BertAddNorm(ConfigLayer):
    """dense -> dropout -> LayerNorm(. + residual): both BERT's `BertSelfOutput` and its `BertOutput`."""

    def __init__(self, config: BertConfig, in_dim: int, **kwargs):
        super().__init__(config, **kwargs)
        self.in_dim = in_dim
        self.dense = dense(config.hidden_size, "dense", config.initializer_range)
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = layer_norm(config.layer_norm_eps)

    def build(self, input_shape=None):
        self.dense.build((None, None, self.in_dim))
        self.LayerNorm.build((None, None, self.config.hidden_size))

    def get_config(self):
        return {**super().get_config(), "in_dim": self.in_dim}

    def call(self, x, residual, training=False):
        return self.LayerNorm(self.dropout(self.dense(x), training=training) + residual)


class BertAttention(ConfigLayer):
    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.self = BertSelfAttention(config, name="self")
        self.output_ = BertAddNorm(config, config.hidden_size, name="output")

    def build(self, input_shape=None):
        self.self.build()
        self.output_.build()

    def call(self, x, mask, training=False):
        context, probs = self.self(x, mask, training=training)
        return self.output_(context, x, training=training), probs


class BertIntermediate(ConfigLayer):
    """dense + activation (one fused kernel, see `Linear`)."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.dense = dense(config.intermediate_size, "dense", config.initializer_range, config.hidden_act)

    def build(self, input_shape=None):
        self.dense.build((None, None, self.config.hidden_size))

    def call(self, x):
        return self.dense(x)  # (B, T, intermediate_size)


class BertLayer(ConfigLayer):
    """attention (+ add & norm) -> intermediate (dense + activation) -> output (dense + add & norm)."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.attention = BertAttention(config, name="attention")
        self.intermediate = BertIntermediate(config, name="intermediate")
        # `output` is a Keras property; the trailing underscore is dropped when naming weights.
        self.output_ = BertAddNorm(config, config.intermediate_size, name="output")

    def build(self, input_shape=None):
        for sub in (self.attention, self.intermediate, self.output_):
            sub.build()

    def call(self, x, mask, training=False):
        x, probs = self.attention(x, mask, training=training)
        return self.output_(self.intermediate(x), x, training=training), probs


class BertEncoder(LayerStack):
    block_class = BertLayer
    num_layers_field = "num_hidden_layers"


class BertPooler(ConfigLayer):
    """dense + tanh on the [CLS] vector."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.dense = dense(config.hidden_size, "dense", config.initializer_range)

    def build(self, input_shape=None):
        self.dense.build((None, self.config.hidden_size))

    def call(self, hidden):
        return tf.tanh(self.dense(hidden[:, 0]))  # (B, C) from the [CLS] position


class BertModel(PreTrainedModel):
    """The encoder plus the pooler (dense + tanh on the [CLS] vector): `last_hidden_state`, `pooler_output`."""

    config_class = BertConfig
    base_model_prefix = "bert"

    def __init__(self, config: BertConfig | None = None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        self.embeddings = BertEmbeddings(c, name="embeddings")
        self.encoder = BertEncoder(c, name="encoder")
        self.pooler = BertPooler(c, name="pooler")
        self._build_all()

    def call(self, input_ids, attention_mask, token_type_ids, output_hidden_states=False,
             output_attentions=False, training=False):
        x = self.embeddings(input_ids, token_type_ids, training=training)  # (B, T, C)
        hidden, attentions = self.encoder(x, additive_attention_mask(attention_mask), training=training)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden[-1],
            pooler_output=self.pooler(hidden[-1]),
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )


class BertForSequenceClassification(PreTrainedModel):
    """pooler_output -> dropout -> classifier (hidden -> num_labels)."""

    config_class = BertConfig
    base_model_prefix = "bert"

    def __init__(self, config: BertConfig | None = None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        self.bert = BertModel(c, name="bert")
        drop = c.classifier_dropout if c.classifier_dropout is not None else c.hidden_dropout_prob
        self.dropout = keras.layers.Dropout(drop)
        self.classifier = dense(c.num_labels, "classifier", c.initializer_range)
        self._build_all()

    def build(self, input_shape=None):
        self.classifier.build((None, self.config.hidden_size))

    def call(self, input_ids, attention_mask, token_type_ids, output_hidden_states=False,
             output_attentions=False, training=False):
        out = self.bert.call(input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions, training)
        logits = self.classifier(self.dropout(out.pooler_output, training=training))  # (B, num_labels)
        return SequenceClassifierOutput(logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)
