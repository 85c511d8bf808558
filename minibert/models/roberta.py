"""RoBERTa (and XLM-RoBERTa, CamemBERT and data2vec-text, the same architecture), as differences from BERT (`models/bert.py`).

Mirrors transformers' `models/roberta/modeling_roberta.py`. The blocks, encoder, pooler and shared heads
are BERT's; what differs is stated here:
- positions come from the ids: pads keep `padding_idx` and real tokens count up from `padding_idx + 1`
  (transformers' `create_position_ids_from_input_ids`), so a row's padding side changes nothing;
- the sequence classifier is its own head, `classifier.dense -> tanh -> classifier.out_proj` on `<s>`;
- the LM head is `lm_head.dense -> gelu -> lm_head.layer_norm -> decoder` (tied) + `lm_head.bias`.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from ..config import CamembertConfig, Data2VecTextConfig, RobertaConfig, XLMRobertaConfig
from ..heads import ForMaskedLM, ForMultipleChoice, ForQuestionAnswering, ForSequenceClassification, ForTokenClassification
from ..interp import hook
from ..layers import ConfigLayer, LayerNorm, Linear, TiedDecoder
from .bert import BertEmbeddings, BertModel, BertPreTrainedModel


class RobertaEmbeddings(BertEmbeddings):
    """BERT's embeddings, with position ids counted from the non-pad tokens."""

    def call(self, input_ids, token_type_ids, training=False):
        """input_ids, token_type_ids: (B, T) -> (B, T, C)."""
        pad = self.config.pad_token_id
        real = tf.cast(tf.not_equal(input_ids, pad), tf.int32)  # (B, T): 1 for every token but <pad>
        positions = tf.cumsum(real, axis=1) * real + pad  # (B, T): pad + 1, pad + 2, ... ; pads stay at pad
        x = (hook("hook_embed", self.word_embeddings(input_ids))  # (B, T, C)
             + hook("hook_token_type_embed", self.token_type_embeddings(token_type_ids))  # (B, T, C)
             + hook("hook_pos_embed", self.position_embeddings(positions)))  # (B, T, C)
        return hook("hook_full_embed", self.dropout(self.LayerNorm(x), training=training))


class RobertaModel(BertModel):
    """BERT's encoder and pooler on RoBERTa's embeddings."""

    config_class = RobertaConfig
    base_model_prefix = "roberta"
    embeddings_class = RobertaEmbeddings


class RobertaPreTrainedModel(BertPreTrainedModel):
    config_class = RobertaConfig
    base_model_prefix = "roberta"

    def make_body(self, with_pooler):
        return RobertaModel(self.config, add_pooling_layer=with_pooler, name=self.base_model_prefix)


class RobertaClassificationHead(ConfigLayer):
    """`classifier`: <s> -> dropout -> dense -> tanh -> dropout -> out_proj."""

    def __init__(self, config: RobertaConfig, dropout: float, activation: str = "tanh", **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.rate, self.activation = dropout, activation
        self.dense = Linear(c.hidden_size, c.hidden_size, c.initializer_range, activation, name="dense")
        self.dropout = keras.layers.Dropout(dropout)
        self.out_proj = Linear(c.hidden_size, c.num_labels, c.initializer_range, name="out_proj")

    def get_config(self):
        return {**super().get_config(), "dropout": self.rate, "activation": self.activation}

    def features(self, hidden, training=False):
        """(B, T, C) -> the (B, C) vector out_proj reads."""
        return self.dense(self.dropout(hidden[:, 0], training=training))

    def call(self, hidden, training=False):
        return self.out_proj(self.dropout(self.features(hidden, training), training=training))  # (B, num_labels)


class RobertaForSequenceClassification(ForSequenceClassification, RobertaPreTrainedModel):
    """<s> hidden state -> classifier (dense -> tanh -> out_proj); no pooler."""

    uses_pooler = False
    pool_description = "<s> hidden state -> classifier.dense -> tanh"

    def build_head(self, c):
        self.classifier = RobertaClassificationHead(c, self.classifier_dropout, name="classifier")

    def head(self, out, training=False):
        return {"logits": self.classifier(out.last_hidden_state, training=training)}

    def pooled_from(self, hidden):
        return self.classifier.features(hidden)


class RobertaForMultipleChoice(ForMultipleChoice, RobertaPreTrainedModel):
    """Per choice: pooler_output -> dropout -> classifier (hidden -> 1), as BERT's."""


class RobertaForTokenClassification(ForTokenClassification, RobertaPreTrainedModel):
    """Per token: last hidden state -> dropout -> classifier (hidden -> num_labels)."""


class RobertaForQuestionAnswering(ForQuestionAnswering, RobertaPreTrainedModel):
    """Per token: last hidden state -> qa_outputs (hidden -> 2) -> start and end logits."""


class RobertaLMHead(TiedDecoder):
    """`lm_head`: dense -> gelu (always the exact form) -> layer_norm -> the tied decoder + `lm_head.bias`."""

    def __init__(self, config: RobertaConfig, word_embeddings, **kwargs):
        super().__init__(word_embeddings, **kwargs)
        c = config
        self.dense = Linear(c.hidden_size, c.hidden_size, c.initializer_range, "gelu", name="dense")
        self.layer_norm = LayerNorm(c.hidden_size, c.layer_norm_eps, name="layer_norm")

    def call(self, x):
        return self.decode(self.layer_norm(self.dense(x)))  # (B, T, C) -> (B, T, vocab)


class RobertaForMaskedLM(ForMaskedLM, RobertaPreTrainedModel):
    """Per token: lm_head -> logits over the vocabulary."""

    tied_weights = ("lm_head.decoder.weight", "lm_head.decoder.bias")

    def build_head(self, c):
        self.lm_head = RobertaLMHead(c, self.body.embeddings.word_embeddings, name="lm_head")

    def lm_logits(self, hidden):
        return self.lm_head(hidden)


# XLM-RoBERTa, CamemBERT and data2vec-text: the same classes under transformers' names, each with its own
# config class (and, for data2vec-text, the attribute its checkpoints name the encoder by).
def _renamed(cls, prefix: str, config_class, base_model_prefix: str = "roberta"):
    name = cls.__name__.replace("Roberta", prefix)
    return type(name, (cls,), {"config_class": config_class, "base_model_prefix": base_model_prefix,
                               "__doc__": cls.__doc__, "__module__": __name__, "__qualname__": name})


def _xlm(cls):
    return _renamed(cls, "XLMRoberta", XLMRobertaConfig)


def _camembert(cls):
    return _renamed(cls, "Camembert", CamembertConfig)


def _data2vec(cls):
    return _renamed(cls, "Data2VecText", Data2VecTextConfig, "data2vec_text")


XLMRobertaModel = _xlm(RobertaModel)
XLMRobertaForSequenceClassification = _xlm(RobertaForSequenceClassification)
XLMRobertaForMultipleChoice = _xlm(RobertaForMultipleChoice)
XLMRobertaForTokenClassification = _xlm(RobertaForTokenClassification)
XLMRobertaForQuestionAnswering = _xlm(RobertaForQuestionAnswering)
XLMRobertaForMaskedLM = _xlm(RobertaForMaskedLM)

CamembertModel = _camembert(RobertaModel)
CamembertForSequenceClassification = _camembert(RobertaForSequenceClassification)
CamembertForMultipleChoice = _camembert(RobertaForMultipleChoice)
CamembertForTokenClassification = _camembert(RobertaForTokenClassification)
CamembertForQuestionAnswering = _camembert(RobertaForQuestionAnswering)
CamembertForMaskedLM = _camembert(RobertaForMaskedLM)

Data2VecTextModel = _data2vec(RobertaModel)
Data2VecTextForSequenceClassification = _data2vec(RobertaForSequenceClassification)
Data2VecTextForMultipleChoice = _data2vec(RobertaForMultipleChoice)
Data2VecTextForTokenClassification = _data2vec(RobertaForTokenClassification)
Data2VecTextForQuestionAnswering = _data2vec(RobertaForQuestionAnswering)
Data2VecTextForMaskedLM = _data2vec(RobertaForMaskedLM)
