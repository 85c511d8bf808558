"""BERT, top to bottom: embeddings -> encoder layers -> pooler -> model -> heads.

Mirrors transformers' `models/bert/modeling_bert.py`. Attribute names are the PyTorch module names
(`attention.self.query`, `intermediate.dense`, `encoder.layer[i]`), so every Hub weight name falls out
of the layer tree (see `checkpoint.hub_variables`). `self.self` below is not a typo: it is BERT's
`BertAttention.self` submodule, and the name has to match.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from ..config import BertConfig
from ..interp import attention_output, hook, linear_with_activation
from ..heads import (ForMaskedLM, ForMultipleChoice, ForQuestionAnswering, ForSequenceClassification,
                     ForTokenClassification, HeadModel)
from ..layers import (ConfigLayer, Embedding, LayerNorm, LayerStack, Linear, TiedDecoder, additive_attention_mask,
                      multi_head_attention)
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutputWithPooling, encoder_output


class BertEmbeddings(ConfigLayer):
    """word + position + token-type embeddings -> LayerNorm -> dropout."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c, width = config, self.width(config)
        self.word_embeddings = Embedding(c.vocab_size, width, c.initializer_range, name="word_embeddings")
        self.position_embeddings = Embedding(c.max_position_embeddings, width, c.initializer_range,
                                             name="position_embeddings")
        self.token_type_embeddings = Embedding(c.type_vocab_size, width, c.initializer_range,
                                               name="token_type_embeddings")
        self.LayerNorm = LayerNorm(width, c.layer_norm_eps)
        self.dropout = keras.layers.Dropout(c.hidden_dropout_prob)

    @staticmethod
    def width(config: BertConfig) -> int:
        return config.hidden_size  # ELECTRA's embeddings are narrower than its encoder

    def call(self, input_ids, token_type_ids, training=False):
        """input_ids, token_type_ids: (B, T) -> (B, T, C)."""
        T = tf.shape(input_ids)[1]
        words = hook("hook_embed", self.word_embeddings(input_ids))  # (B, T, C)
        x = (words
             + hook("hook_token_type_embed", self.token_type_embeddings(token_type_ids))  # (B, T, C)
             + hook("hook_pos_embed", self.position_embeddings.embeddings[:T], broadcast_like=words))  # (T, C), broadcast over the batch
        return hook("hook_full_embed", self.dropout(self.LayerNorm(x), training=training))


class BertSelfAttention(ConfigLayer):
    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.query = Linear(c.hidden_size, c.hidden_size, c.initializer_range, name="query")
        self.key = Linear(c.hidden_size, c.hidden_size, c.initializer_range, name="key")
        self.value = Linear(c.hidden_size, c.hidden_size, c.initializer_range, name="value")
        self.dropout = keras.layers.Dropout(c.attention_probs_dropout_prob)

    def call(self, x, attn_mask, training=False):
        """x: (B, T, C); attn_mask: additive (B, 1, 1, T). Returns (B, T, C) and probabilities (B, H, T, T)."""
        return multi_head_attention(self.query(x), self.key(x), self.value(x), attn_mask,
                                    self.config.num_attention_heads, self.dropout, training)


class BertAddNorm(ConfigLayer):
    """dense -> dropout -> LayerNorm(. + residual): both BERT's `BertSelfOutput` and its `BertOutput`.

    `sublayer` ("attn", "mlp" or None) names its hook points: the dense's output, the sum and the LayerNorm's
    output are `hook_attn_out`, `ln1.hook_in`, `hook_resid_mid` after attention and `hook_mlp_out`,
    `ln2.hook_in`, `hook_resid_post` after the MLP (`interp`)."""

    HOOKS = {"attn": ("hook_attn_out", "ln1.hook_in", "hook_resid_mid"),
             "mlp": ("hook_mlp_out", "ln2.hook_in", "hook_resid_post")}

    def __init__(self, config: BertConfig, in_dim: int, sublayer: str | None = None, **kwargs):
        super().__init__(config, **kwargs)
        self.in_dim, self.sublayer = in_dim, sublayer
        self.dense = Linear(in_dim, config.hidden_size, config.initializer_range, name="dense")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = LayerNorm(config.hidden_size, config.layer_norm_eps)

    def get_config(self):
        return {**super().get_config(), "in_dim": self.in_dim, "sublayer": self.sublayer}

    def call(self, x, residual, training=False):
        """x: (B, T, in_dim); residual: (B, T, C) -> (B, T, C)."""
        if self.sublayer is None:
            return self.LayerNorm(self.dropout(self.dense(x), training=training) + residual)
        out, total, normed = self.HOOKS[self.sublayer]
        y = attention_output(self.dense, x, self.config.num_attention_heads) if self.sublayer == "attn" \
            else self.dense(x)  # (B, T, C)
        x = hook(total, self.dropout(hook(out, y), training=training) + residual)
        return hook(normed, self.LayerNorm(x))


class BertAttention(ConfigLayer):
    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.self = BertSelfAttention(config, name="self")
        self.output_ = BertAddNorm(config, config.hidden_size, sublayer="attn", name="output")

    def call(self, x, attn_mask, training=False):
        """x: (B, T, C); attn_mask: additive (B, 1, 1, T)."""
        context, probs = self.self(x, attn_mask=attn_mask, training=training)
        return self.output_(context, residual=x, training=training), probs


class BertIntermediate(ConfigLayer):
    """dense + activation (one fused kernel, see `Linear`)."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.dense = Linear(c.hidden_size, c.intermediate_size, c.initializer_range, c.hidden_act, name="dense")

    def call(self, x):
        return linear_with_activation(self.dense, x)  # (B, T, C) -> (B, T, intermediate_size)


class BertLayer(ConfigLayer):
    """attention (+ add & norm) -> intermediate (dense + activation) -> output (dense + add & norm)."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.attention = BertAttention(config, name="attention")
        self.intermediate = BertIntermediate(config, name="intermediate")
        # `output` is a Keras property; the trailing underscore is dropped when naming weights.
        self.output_ = BertAddNorm(config, config.intermediate_size, sublayer="mlp", name="output")

    def call(self, x, attn_mask, training=False):
        """x: (B, T, C); attn_mask: additive (B, 1, 1, T)."""
        x, probs = self.attention(x, attn_mask=attn_mask, training=training)
        return self.output_(self.intermediate(x), residual=x, training=training), probs

    def attention_linears(self):
        """(query, key, value, output) `Linear`s, for the per-head weight views (`interp.attention_weights`)."""
        a = self.attention
        return a.self.query, a.self.key, a.self.value, a.output_.dense


class BertPooler(ConfigLayer):
    """dense + tanh on the [CLS] vector."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.dense = Linear(config.hidden_size, config.hidden_size, config.initializer_range, "tanh", name="dense")

    def call(self, hidden):
        return self.dense(hidden[:, 0])  # (B, T, C) -> (B, C) from the [CLS] position


class BertModel(PreTrainedModel):
    """The encoder plus the pooler (dense + tanh on the [CLS] vector): `last_hidden_state`, `pooler_output`.

    Token-level heads build it without the pooler (`add_pooling_layer=False`), as transformers does,
    so their checkpoints have no pooler weights.
    """

    config_class = BertConfig
    base_model_prefix = "bert"
    embeddings_class = BertEmbeddings

    def __init__(self, config: BertConfig | None = None, add_pooling_layer: bool = True, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        self.embeddings = self.embeddings_class(c, name="embeddings")
        self.encoder = LayerStack(c, BertLayer, c.num_hidden_layers, name="encoder")
        self.pooler = BertPooler(c, name="pooler") if add_pooling_layer else None
        self.build()

    def get_config(self):
        return {**super().get_config(), "add_pooling_layer": self.pooler is not None}

    def call(self, input_ids, attention_mask, token_type_ids, output_hidden_states=False,
             output_attentions=False, training=False):
        x = self.embeddings(input_ids, token_type_ids=token_type_ids, training=training)  # (B, T, C)
        hidden, attentions = self.encoder(x, attn_mask=additive_attention_mask(attention_mask), training=training)
        pooled = self.pooler(hidden[-1]) if self.pooler is not None else None
        return encoder_output(BaseModelOutputWithPooling, hidden, attentions, output_hidden_states, output_attentions,
                              pooler_output=pooled)

    def head_input(self, hidden):
        """For `trace`: what a classifier on this encoder reads, from the last hidden state (B, T, C)."""
        if self.pooler is None:
            return hidden[:, 0], "[CLS] hidden state"
        return self.pooler(hidden), "pooler output (dense + tanh on [CLS])"


class BertPreTrainedModel(HeadModel):
    """What every BERT head shares: the body, and the pooler output as the classifiers' input."""

    config_class = BertConfig
    base_model_prefix = "bert"
    pool_description = "pooler output (dense + tanh on [CLS])"

    def make_body(self, with_pooler):
        return BertModel(self.config, add_pooling_layer=with_pooler, name="bert")

    @property
    def classifier_dropout(self) -> float:
        c = self.config
        return c.classifier_dropout if c.classifier_dropout is not None else c.hidden_dropout_prob

    token_dropout = classifier_dropout

    def build_pool(self, c):
        pass  # the pooler is part of the body

    def pool(self, out):
        return out.pooler_output  # (B, C), computed by the body

    def pooled_from(self, hidden):
        return self.body.pooler(hidden)  # (B, T, C) -> (B, C)


class BertForSequenceClassification(ForSequenceClassification, BertPreTrainedModel):
    """pooler_output -> dropout -> classifier (hidden -> num_labels)."""


class BertForMultipleChoice(ForMultipleChoice, BertPreTrainedModel):
    """Per choice: pooler_output -> dropout -> classifier (hidden -> 1)."""


class BertForTokenClassification(ForTokenClassification, BertPreTrainedModel):
    """Per token: last hidden state -> dropout -> classifier (hidden -> num_labels)."""


class BertForQuestionAnswering(ForQuestionAnswering, BertPreTrainedModel):
    """Per token: last hidden state -> qa_outputs (hidden -> 2) -> start and end logits."""


class BertPredictionHeadTransform(ConfigLayer):
    """dense + activation -> LayerNorm."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.dense = Linear(c.hidden_size, c.hidden_size, c.initializer_range, c.hidden_act, name="dense")
        self.LayerNorm = LayerNorm(c.hidden_size, c.layer_norm_eps)

    def call(self, x):
        return self.LayerNorm(self.dense(x))  # (B, T, C)


class BertLMPredictionHead(TiedDecoder):
    """`cls.predictions`: transform, then the decoder tied to the word embeddings, with its own bias."""

    def __init__(self, config: BertConfig, word_embeddings, **kwargs):
        super().__init__(word_embeddings, **kwargs)
        self.transform = BertPredictionHeadTransform(config, name="transform")

    def call(self, x):
        return self.decode(self.transform(x))  # (B, T, C) -> (B, T, vocab)


class BertOnlyMLMHead(keras.layers.Layer):
    """`cls`: only holds `predictions`, so that the Hub names read `cls.predictions.*`."""

    def __init__(self, config: BertConfig, word_embeddings, **kwargs):
        super().__init__(**kwargs)
        self.predictions = BertLMPredictionHead(config, word_embeddings, name="predictions")

    def call(self, x):
        return self.predictions(x)


class BertForMaskedLM(ForMaskedLM, BertPreTrainedModel):
    """Per token: cls.predictions (transform, tied decoder) -> logits over the vocabulary."""

    tied_weights = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")

    def build_head(self, c):
        self.cls = BertOnlyMLMHead(c, self.body.embeddings.word_embeddings, name="cls")

    def lm_logits(self, hidden):
        return self.cls(hidden)
