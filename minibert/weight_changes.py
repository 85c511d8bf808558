"""Noticing that a model's weights changed after the litert engine converted them, so it never runs stale ones.

A converted flatbuffer holds a copy of the weights. They can change in two ways, and each is caught here:
- an eager assignment (`set_weights`, `load_weights`, `variable.assign`): the converted model's variables
  count each one (`watch`), a free check at every call, and after one the weights' full key is compared;
- a training step, eager or compiled into a `tf.function` (`fit`, a loop over `GradientTape`), whose
  optimizer writes the variables with no Python call at all: a minibert layer that runs under a tape says
  so (`note_training`), and from then on every litert call first compares a sample of the weights with the
  sample taken at conversion (a few milliseconds), reconverting when they differ.
"""
from __future__ import annotations

import numpy as np

_state = {"assignments": 0, "training": False}
SAMPLES = 64  # values read per variable; training moves every value it updates, so a sample sees it


def note_training() -> None:
    _state["training"] = True


def assignments() -> int:
    return _state["assignments"]


def watch(model) -> None:
    """Count eager assignments to the model's variables (the instances' own methods, not Keras's class)."""
    for v in model.weights:
        if "_minibert_watched" in v.__dict__:
            continue
        for name in ("assign", "assign_add", "assign_sub"):
            setattr(v, name, _counting(getattr(v, name)))
        v.__dict__["_minibert_watched"] = True


def _counting(method):
    def assign(*args, **kwargs):
        _state["assignments"] += 1
        return method(*args, **kwargs)

    return assign


def fingerprint(model) -> np.ndarray:
    """A fixed sample of every variable's values (strided over the flattened variable), as raw bits."""
    import tensorflow as tf

    parts = []
    for v in model.weights:
        flat = tf.reshape(v.value, [-1])
        n = int(flat.shape[0])
        parts.append(tf.bitcast(flat[:: max(1, n // SAMPLES)], tf.int32).numpy())
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


class Stamp:
    """What the weights were when a forward was made, checked before each of its calls: after an eager
    assignment by the full key (`key(model)`, exact however few values changed), after training by the sample."""

    def __init__(self, model, key: str, key_fn):
        self.key, self.key_fn = key, key_fn
        self.assignments, self.sample = assignments(), fingerprint(model)

    def stale(self, model) -> bool:
        if self.assignments != _state["assignments"]:
            self.assignments = _state["assignments"]
            if self.key_fn(model) != self.key:
                return True
            self.sample = fingerprint(model)
            return False
        return _state["training"] and not np.array_equal(self.sample, fingerprint(model))
