"""Task heads: one encoder body, different heads on top, as the course's "Behind the pipeline" shows.

A head model holds its family's encoder under the Hub prefix (`self.bert`, `self.distilbert`) and the
head's layers under their Hub names, so the one naming rule (`checkpoint.hub_variables`) maps every
weight. The heads that are the same in every family live here; a family file declares its
`…PreTrainedModel` (config class, prefix, body, what its classifier pools) and combines:

    class BertForTokenClassification(ForTokenClassification, BertPreTrainedModel): ...

Heads that differ by family (masked LM, RoBERTa's classifier) are written in the family file.
"""
from __future__ import annotations

import keras

from .layers import Linear
from .modeling import PreTrainedModel
from .outputs import (MaskedLMOutput, MultipleChoiceModelOutput, QuestionAnsweringModelOutput,
                      SequenceClassifierOutput, TokenClassifierOutput)


class HeadModel(PreTrainedModel):
    """The family's encoder (`make_body`) under `base_model_prefix`, then `build_head`'s layers."""

    output_class: type = None
    uses_pooler = False  # whether the head reads the encoder's pooler (BERT-style bodies only)

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        setattr(self, self.base_model_prefix, self.make_body(self.uses_pooler))
        self.build_head(self.config)
        self.build()

    @property
    def body(self):
        return getattr(self, self.base_model_prefix)

    # What a family's …PreTrainedModel provides.
    def make_body(self, with_pooler: bool):
        raise NotImplementedError

    def build_head(self, config):
        raise NotImplementedError

    def head(self, out, training=False) -> dict:
        """The encoder's output -> this head's output fields."""
        raise NotImplementedError

    def call(self, input_ids, attention_mask, token_type_ids=None, output_hidden_states=False,
             output_attentions=False, training=False):
        out = self.body.call(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                             training=training)
        return self.output_class(**self.head(out, training=training),
                                 hidden_states=out.hidden_states, attentions=out.attentions)

    def head_input(self, hidden):
        """(the tensor the head starts from, what it is), for `trace`, from the last hidden state (B, T, C)."""
        return hidden, "last hidden state, every token"


class ForSequenceClassification(HeadModel):
    """The family's pooled [CLS] features (`pool`) -> dropout -> classifier (hidden -> num_labels)."""

    output_class = SequenceClassifierOutput
    uses_pooler = True

    def build_head(self, c):
        self.build_pool(c)
        self.dropout = keras.layers.Dropout(self.classifier_dropout)
        self.classifier = Linear(c.hidden_size, self.num_outputs, c.initializer_range, name="classifier")

    @property
    def num_outputs(self) -> int:
        return self.config.num_labels

    def head(self, out, training=False):
        pooled = self.pool(out)  # (B, C)
        return {"logits": self.classifier(self.dropout(pooled, training=training))}  # (B, num_labels)

    def pool(self, out):
        """The encoder's output -> the (B, C) vector the classifier reads."""
        return self.pooled_from(out.last_hidden_state)

    def head_input(self, hidden):
        return self.pooled_from(hidden), self.pool_description


class ForMultipleChoice(ForSequenceClassification):
    """Each (question, choice) sequence scored like a one-label sequence classifier; the scores of a
    question's choices are its logits, (B, choices)."""

    output_class = MultipleChoiceModelOutput
    takes_choices = True

    @property
    def num_outputs(self) -> int:
        return 1


class ForTokenClassification(HeadModel):
    """Every token's last hidden state -> dropout -> classifier (hidden -> num_labels)."""

    output_class = TokenClassifierOutput

    def build_head(self, c):
        self.dropout = keras.layers.Dropout(self.token_dropout)
        self.classifier = Linear(c.hidden_size, c.num_labels, c.initializer_range, name="classifier")

    def head(self, out, training=False):
        return {"logits": self.classifier(self.dropout(out.last_hidden_state, training=training))}  # (B, T, num_labels)


class ForQuestionAnswering(HeadModel):
    """Every token's last hidden state -> qa_outputs (hidden -> 2): where the answer starts and ends."""

    output_class = QuestionAnsweringModelOutput
    qa_dropout = 0.0  # only DistilBERT applies dropout here

    def build_head(self, c):
        self.dropout = keras.layers.Dropout(self.qa_dropout)
        self.qa_outputs = Linear(c.hidden_size, 2, c.initializer_range, name="qa_outputs")

    def head(self, out, training=False):
        logits = self.qa_outputs(self.dropout(out.last_hidden_state, training=training))  # (B, T, 2)
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}  # (B, T) each


class ForMaskedLM(HeadModel):
    """Every token's last hidden state -> the family's LM head -> logits over the vocabulary, through a
    decoder tied to the word embeddings (`layers.TiedDecoder`)."""

    output_class = MaskedLMOutput

    def head(self, out, training=False):
        return {"logits": self.lm_logits(out.last_hidden_state)}  # (B, T, vocab_size)

    def lm_logits(self, hidden):
        raise NotImplementedError

