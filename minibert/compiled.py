"""The inference forward as compiled TensorFlow graphs, with a bounded number of compilations.

`PreTrainedModel.__call__` sends every eager inference call here. Two ways, chosen by input size
(`scripts/bench.py` measures the choice; its figures are in docs/benchmarks.md):
- small inputs (batch <= 4, sequence <= 128: interactive use) run under XLA, which fuses the
  element-wise work into the matmuls. XLA compiles once per input shape, so inputs are padded up
  to a bucket (XLA_BATCHES x XLA_SEQS: at most 18 shapes). Padding is masked, so real positions do
  not change (rows with no real token, or padded on the left, are the exception: `engine.paddable`);
- larger inputs run as a plain graph with open batch and sequence dimensions: traced once, no
  padding waste; there XLA's gain was smaller than what padding to a bucket costs.
Whether small inputs use XLA at all is part of the kernel plan `cpu.py` chooses for the CPU.
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np
import tensorflow as tf

from . import cpu
from .engine import paddable

XLA_BATCHES = (1, 2, 4)
XLA_SEQS = (16, 32, 48, 64, 96, 128)


class CompiledForward:
    """`model.call` for one choice of extra outputs (hidden states, attentions), compiled."""

    def __init__(self, model, output_hidden_states: bool, output_attentions: bool):
        self.max_len = model.config.max_sequence_length
        # Bucket padding uses the pad id: RoBERTa gives pad tokens the padding position, any other id a new one.
        self.pad_id = model.config.pad_token_id or 0
        self.shapes: set[tuple[int, int]] = set()  # the padded shapes XLA has compiled
        self._out_cls = None
        spec = tf.TensorSpec([None, None], tf.int32)

        def forward(ids, mask, types):
            out = model.call(input_ids=ids, attention_mask=mask, token_type_ids=types,
                             output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                             training=False)
            self._out_cls = type(out)  # a Python value, read at trace time
            return dict(out)

        # Each model traces its graphs once. TensorFlow counts traces per code object, so with `forward` itself
        # every model after the third looked like a retracing loop ("triggered tf.function retracing"
        # warnings); a partial has no code object: each graph is counted on its own.
        self.xla = tf.function(functools.partial(forward), input_signature=[spec] * 3, jit_compile=True)
        self.graph = tf.function(functools.partial(forward), input_signature=[spec] * 3)
        # The CPU's rule or MINIBERT_KERNELS (cpu.py); bfloat16 matmuls run faster in oneDNN's graph than under XLA.
        self.use_xla = cpu.kernel_plan().small == "xla" and model.dtype_name != "bfloat16"  # int8 falls back in float32

    def bucket(self, batch: int, seq: int):
        """The padded XLA shape for this input, or None when it is not small (or the kernel plan runs no XLA)."""
        if not self.use_xla:
            return None
        b = next((x for x in XLA_BATCHES if x >= batch), None)
        t = next((x for x in XLA_SEQS if x >= seq), None)
        if b is None or t is None:
            return None
        return b, min(t, self.max_len)  # never past the position table

    def __call__(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray):
        """(B, T) int32 arrays, as `prepare_inputs` returns them, to the model's output object."""
        B, T = ids.shape
        shape = self.bucket(B, T)
        if shape is None or not paddable(mask):  # such batches take the unpadded path
            compiles = self.graph.experimental_get_tracing_count() == 0
            result = self.graph(ids, mask, types)
        else:
            compiles = shape not in self.shapes
            self.shapes.add(shape)
            padded = shape != (B, T)
            if padded:
                pad = ((0, shape[0] - B), (0, shape[1] - T))  # pad ids with mask 0: masked keys, discarded rows
                ids = np.pad(ids, pad, constant_values=self.pad_id)
                mask, types = np.pad(mask, pad), np.pad(types, pad)
            result = self.xla(ids, mask, types)
            if padded:
                per_token = self._out_cls.per_token_2d
                result = {k: unpad(v, B, T, key=k, per_token=k in per_token) for k, v in result.items()}
        if compiles:
            release_free_memory()
        return self._out_cls(**result)  # set while tracing


def unpad(value, B: int, T: int, key: str, per_token: bool):
    """An output of the padded (B', T') forward cut back to the real (B, T). `per_token`: a 2-D output
    whose second axis is the sequence (QA's start/end logits), not a feature axis."""
    if isinstance(value, (tuple, list)):
        return tuple(unpad(v, B, T, key, per_token) for v in value)
    if key == "attentions":
        return value[:B, :, :T, :T]  # (B, H, T, T)
    if value.shape.rank == 3 or per_token:
        return value[:B, :T]  # (B, T, C) or (B, T)
    return value[:B]  # (B, C) or (B, num_labels)


def release_free_memory():
    """Give the memory that malloc holds free back to the OS (glibc; elsewhere this does nothing).

    Compiling a forward (grappler's passes, XLA's LLVM) frees much working memory that glibc keeps
    mapped; returning it after each compilation lowers the peak RSS of a long run by tens of MB.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
