"""Model outputs that behave like transformers' ones: `out.logits`, `out["logits"]`, `out[0]`.

Fields left as None are absent, so `out[0]` is always the first field that was computed,
exactly as in transformers.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any


class ModelOutput(OrderedDict):
    """Base class: a dataclass whose non-None fields are also dict entries and tuple positions."""

    per_token_2d: tuple = ()  # (B, T) fields: one value per token, not one vector per text

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                super().__setitem__(f.name, v)

    def __getitem__(self, k):
        if isinstance(k, (int, slice)):
            return self.to_tuple()[k]
        return super().__getitem__(k)

    def __setitem__(self, k, v):
        super().__setitem__(k, v)
        object.__setattr__(self, k, v)

    def __iter__(self):  # iterate keys, as a dict does
        return super().__iter__()

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self.values())

    def __repr__(self):
        inner = ", ".join(f"{k}={_short(v)}" for k, v in self.items())
        return f"{type(self).__name__}({inner})"

    __hash__ = None


def _short(v):
    shape = getattr(v, "shape", None)
    if shape is not None:
        return f"<{type(v).__name__} shape={tuple(shape)}>"
    if isinstance(v, tuple):
        return f"({len(v)} tensors)"
    return repr(v)


@dataclass(repr=False, eq=False)
class BaseModelOutput(ModelOutput):
    last_hidden_state: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass(repr=False, eq=False)
class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: Any = None
    pooler_output: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass(repr=False, eq=False)
class SequenceClassifierOutput(ModelOutput):
    logits: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


def encoder_output(cls, hidden: list, attentions: list, output_hidden_states: bool, output_attentions: bool,
                   **fields):
    """An encoder's output object from `LayerStack`'s lists: the last hidden state, and the lists when asked."""
    return cls(last_hidden_state=hidden[-1], hidden_states=tuple(hidden) if output_hidden_states else None,
               attentions=tuple(attentions) if output_attentions else None, **fields)


@dataclass(repr=False, eq=False)
class MaskedLMOutput(ModelOutput):
    logits: Any = None  # (B, T, vocab_size)
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass(repr=False, eq=False)
class TokenClassifierOutput(ModelOutput):
    logits: Any = None  # (B, T, num_labels)
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass(repr=False, eq=False)
class QuestionAnsweringModelOutput(ModelOutput):
    per_token_2d = ("start_logits", "end_logits")

    start_logits: Any = None  # (B, T)
    end_logits: Any = None  # (B, T)
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass(repr=False, eq=False)
class MultipleChoiceModelOutput(ModelOutput):
    logits: Any = None  # (B, choices); hidden states and attentions stay per choice, (B * choices, ...)
    hidden_states: tuple | None = None
    attentions: tuple | None = None


# The names transformers' TensorFlow classes return.
TFBaseModelOutput = BaseModelOutput
TFBaseModelOutputWithPooling = BaseModelOutputWithPooling
TFSequenceClassifierOutput = SequenceClassifierOutput
TFMaskedLMOutput = MaskedLMOutput
TFTokenClassifierOutput = TokenClassifierOutput
TFQuestionAnsweringModelOutput = QuestionAnsweringModelOutput
TFMultipleChoiceModelOutput = MultipleChoiceModelOutput
