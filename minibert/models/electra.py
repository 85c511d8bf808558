"""ELECTRA, as differences from BERT (`models/bert.py`).

Mirrors transformers' `models/electra/modeling_electra.py`. The blocks and encoder are BERT's; what
differs is stated here:
- the embeddings are `embedding_size` wide, and `embeddings_project` maps them to `hidden_size` when the
  two differ; there is no pooler;
- the sequence classifier is RoBERTa's head with GELU in place of tanh (`classifier.dense/out_proj`);
- the multiple-choice head reads `sequence_summary` (dense + GELU on the first token), not a pooler;
- the masked-LM head is the generator's: `generator_predictions` (dense to embedding_size, GELU,
  LayerNorm) then `generator_lm_head`, tied to the word embeddings;
- `ElectraForPreTraining` is the discriminator's replaced-token head: one logit per token.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import ElectraConfig
from ..heads import ForMaskedLM, ForMultipleChoice, ForQuestionAnswering, ForSequenceClassification, ForTokenClassification
from ..layers import ConfigLayer, LayerNorm, LayerStack, Linear, TiedDecoder, additive_attention_mask
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, ModelOutput, encoder_output
from .bert import BertEmbeddings, BertLayer, BertPreTrainedModel
from .roberta import RobertaClassificationHead


class ElectraEmbeddings(BertEmbeddings):
    """BERT's embeddings at width `embedding_size`."""

    @staticmethod
    def width(config: ElectraConfig) -> int:
        return config.embedding_size


class ElectraModel(PreTrainedModel):
    """embeddings (embedding_size) -> embeddings_project (-> hidden_size) -> BERT's encoder; no pooler."""

    config_class = ElectraConfig
    base_model_prefix = "electra"

    def __init__(self, config: ElectraConfig | None = None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        self.embeddings = ElectraEmbeddings(c, name="embeddings")
        if c.embedding_size != c.hidden_size:
            self.embeddings_project = Linear(c.embedding_size, c.hidden_size, c.initializer_range,
                                             name="embeddings_project")
        self.encoder = LayerStack(c, BertLayer, c.num_hidden_layers, name="encoder")
        self.build()

    def call(self, input_ids, attention_mask, token_type_ids, output_hidden_states=False,
             output_attentions=False, training=False):
        x = self.embeddings(input_ids, token_type_ids=token_type_ids, training=training)  # (B, T, E)
        if hasattr(self, "embeddings_project"):
            x = self.embeddings_project(x)  # (B, T, E) -> (B, T, C)
        hidden, attentions = self.encoder(x, attn_mask=additive_attention_mask(attention_mask), training=training)
        return encoder_output(BaseModelOutput, hidden, attentions, output_hidden_states, output_attentions)

    def head_input(self, hidden):
        """For `trace`: what a classifier on this encoder reads, from the last hidden state (B, T, C)."""
        return hidden[:, 0], "[CLS] hidden state"


class ElectraPreTrainedModel(BertPreTrainedModel):
    config_class = ElectraConfig
    base_model_prefix = "electra"
    pool_description = "[CLS] hidden state -> sequence_summary (dense + GELU)"

    def make_body(self, with_pooler):
        return ElectraModel(self.config, name="electra")

    def build_pool(self, c):
        self.sequence_summary = SequenceSummary(c, name="sequence_summary")

    def pool(self, out):
        return self.pooled_from(out.last_hidden_state)

    def pooled_from(self, hidden):
        return self.sequence_summary(hidden)


class SequenceSummary(ConfigLayer):
    """`sequence_summary`: the first token -> summary (dense) -> GELU (transformers' SequenceSummary with
    ELECTRA's settings: summary_type "first", a projection to hidden_size)."""

    def __init__(self, config: ElectraConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        if (c.summary_type, c.summary_use_proj) != ("first", True):
            raise ValueError(f"summary_type={c.summary_type!r}, summary_use_proj={c.summary_use_proj}: "
                             "only ELECTRA's own setting ('first', True) is supported")
        self.summary = Linear(c.hidden_size, c.hidden_size, c.initializer_range, c.summary_activation, name="summary")

    def call(self, hidden):
        return self.summary(hidden[:, 0])  # (B, T, C) -> (B, C)


class ElectraForSequenceClassification(ForSequenceClassification, ElectraPreTrainedModel):
    """[CLS] hidden state -> classifier (dense -> GELU -> out_proj)."""

    uses_pooler = False
    pool_description = "[CLS] hidden state -> classifier.dense -> GELU"

    def build_head(self, c):
        self.classifier = RobertaClassificationHead(c, self.classifier_dropout, activation="gelu", name="classifier")

    def head(self, out, training=False):
        return {"logits": self.classifier(out.last_hidden_state, training=training)}

    def pooled_from(self, hidden):
        return self.classifier.features(hidden)


class ElectraForMultipleChoice(ForMultipleChoice, ElectraPreTrainedModel):
    """Per choice: sequence_summary -> dropout -> classifier (hidden -> 1)."""


class ElectraForTokenClassification(ForTokenClassification, ElectraPreTrainedModel):
    """Per token: last hidden state -> dropout -> classifier (hidden -> num_labels)."""


class ElectraForQuestionAnswering(ForQuestionAnswering, ElectraPreTrainedModel):
    """Per token: last hidden state -> qa_outputs (hidden -> 2) -> start and end logits."""


class ElectraGeneratorPredictions(ConfigLayer):
    """dense (hidden -> embedding_size) + GELU -> LayerNorm."""

    def __init__(self, config: ElectraConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.dense = Linear(c.hidden_size, c.embedding_size, c.initializer_range, "gelu", name="dense")
        self.LayerNorm = LayerNorm(c.embedding_size, c.layer_norm_eps)

    def call(self, x):
        return self.LayerNorm(self.dense(x))  # (B, T, C) -> (B, T, E)


class ElectraForMaskedLM(ForMaskedLM, ElectraPreTrainedModel):
    """Per token: generator_predictions -> generator_lm_head (tied to the word embeddings) -> logits."""

    tied_weights = ("generator_lm_head.weight",)

    def build_head(self, c):
        self.generator_predictions = ElectraGeneratorPredictions(c, name="generator_predictions")
        self.generator_lm_head = TiedDecoder(self.electra.embeddings.word_embeddings, name="generator_lm_head")

    def lm_logits(self, hidden):
        return self.generator_lm_head(self.generator_predictions(hidden))


@dataclass(repr=False, eq=False)
class ElectraForPreTrainingOutput(ModelOutput):
    per_token_2d = ("logits",)

    logits: Any = None  # (B, T): how likely each token is to have been replaced
    hidden_states: tuple | None = None
    attentions: tuple | None = None


class ElectraDiscriminatorPredictions(ConfigLayer):
    """dense + hidden_act -> dense_prediction (hidden -> 1)."""

    def __init__(self, config: ElectraConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.dense = Linear(c.hidden_size, c.hidden_size, c.initializer_range, c.hidden_act, name="dense")
        self.dense_prediction = Linear(c.hidden_size, 1, c.initializer_range, name="dense_prediction")

    def call(self, x):
        return self.dense_prediction(self.dense(x))[..., 0]  # (B, T, C) -> (B, T)


class ElectraForPreTraining(ElectraPreTrainedModel):
    """The discriminator as pre-trained: one replaced-token logit per token."""

    output_class = ElectraForPreTrainingOutput
    refused_architectures = {
        "ElectraForMaskedLM": "an ELECTRA generator, not a discriminator; ElectraForPreTraining needs a "
                              "discriminator checkpoint (such as google/electra-base-discriminator), and a generator "
                              "loads with AutoModelForMaskedLM",
    }

    def build_head(self, c):
        self.discriminator_predictions = ElectraDiscriminatorPredictions(c, name="discriminator_predictions")

    def head(self, out, training=False):
        return {"logits": self.discriminator_predictions(out.last_hidden_state)}
