"""Pieces shared by every model family: activations, the attention mask, multi-head attention maths,
and the layers every family is built from (`Linear`, `Embedding`, `LayerNorm`, `TiedDecoder`, `LayerStack`).

Conventions, stated once:
- an attention mask from the tokenizer is (batch, seq) with 1 = real token, 0 = padding;
- inside the model it becomes an *additive* mask of shape (batch, 1, 1, seq): 0 where a key may be
  attended, float32.min where it may not. It is added to the scaled scores before the softmax, as
  transformers' eager attention does. A row whose keys are all masked therefore gets equal scores
  everywhere and a uniform softmax: finite, never NaN.
"""
from __future__ import annotations

import contextlib
import contextvars
import math

import keras
import tensorflow as tf
from tensorflow.python.eager import record  # not exported; the one place TensorFlow tells if a tape records

from . import weight_changes
from .interp import hook, hook_block

# transformers' ACT2FN names -> TensorFlow functions. "gelu" is the exact erf form in both BERT and
# DistilBERT; "gelu_new" and "gelu_pytorch_tanh" are the tanh approximation.
ACTIVATIONS = {
    "gelu": lambda x: tf.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: tf.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: tf.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: 0.5 * x * (1.0 + tf.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
    "quick_gelu": lambda x: x * tf.sigmoid(1.702 * x),
    "relu": tf.nn.relu,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
}


def get_activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r}; supported: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]


def additive_attention_mask(attention_mask: tf.Tensor, dtype=tf.float32) -> tf.Tensor:
    """(batch, seq) of 1/0 -> (batch, 1, 1, seq) of 0/-inf-ish, broadcast over heads and queries."""
    B, T = tf.unstack(tf.shape(attention_mask))
    # A reshape, not `[:, None, None, :]`: TensorFlow Lite's converter cannot lower a slice that adds axes
    # when the shape is open.
    mask = tf.reshape(tf.cast(attention_mask, dtype), (B, 1, 1, T))  # (B, T) -> (B, 1, 1, T)
    return (1.0 - mask) * dtype.min


# While a checkpoint is being loaded, weights start uninitialised: random numbers (or zeros) that
# would be overwritten at once cost most of a load's time, and the freed buffers stay resident.
# Weights the checkpoint lacks are drawn afterwards (see `PreTrainedModel.from_pretrained`).
_RANDOM_INIT = contextvars.ContextVar("minibert_random_init", default=True)


@contextlib.contextmanager
def no_random_init():
    token = _RANDOM_INIT.set(False)
    try:
        yield
    finally:
        _RANDOM_INIT.reset(token)


def weight_initializer(initializer_range: float):
    """transformers' `_init_weights`: normal(0, initializer_range); left unwritten while loading a checkpoint."""
    if _RANDOM_INIT.get():
        return keras.initializers.RandomNormal(stddev=initializer_range)
    return _unwritten


def _unwritten(shape, dtype=None):
    return tf.raw_ops.Empty(shape=shape, dtype=dtype or tf.float32, init=False)  # memory is not touched


class Linear(keras.layers.Layer):
    """PyTorch's `nn.Linear(in_features, units)` computed as Keras's Dense does: y = x @ kernel + bias,
    `kernel` [in, out], with an optional activation applied to the result.

    The weights exist from construction, so a model can be loaded before its first call. Hub
    checkpoints store this matrix as `weight` [out, in]; `checkpoint.py` transposes it on load and
    save, and is the only place that does ([in, out] multiplies faster in oneDNN and XLA at few rows).
    The matmul, `bias_add` and activation sit next to each other on a 2-D tensor so that
    TensorFlow's oneDNN remapper fuses them into one kernel.
    """

    def __init__(self, in_features: int, units: int, initializer_range: float = 0.02, activation: str | None = None,
                 use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.in_features, self.units = in_features, units
        self.initializer_range = initializer_range
        self.activation = activation
        self.use_bias = use_bias
        self._act = get_activation(activation) if activation else None
        self.kernel = self.add_weight(shape=(in_features, units), initializer=weight_initializer(initializer_range),
                                      name="kernel")
        # `nn.Linear(..., bias=False)` (ModernBERT) stores no bias, so none exists to be named or saved.
        self.bias = self.add_weight(shape=(units,), initializer="zeros", name="bias") if use_bias else None
        self.built = True

    def call(self, x, activate=True):
        """`activate=False` stops before the activation (a hook point between the two, `interp`)."""
        if record.could_possibly_record():  # under a GradientTape: an optimizer may change the weights next
            weight_changes.note_training()
        shape = tf.shape(x)
        x2 = tf.reshape(x, (-1, self.in_features))  # (..., in) -> (N, in)
        lowp = self.__dict__.get("_lowp_kernel")  # set by PreTrainedModel.set_dtype("bfloat16"), else None
        if lowp is None:
            y = tf.matmul(x2, self.kernel)  # (N, in) @ (in, out) -> (N, out)
        else:  # bfloat16 operands; oneDNN accumulates in float32, and the rest of the model stays float32
            y = tf.cast(tf.matmul(tf.cast(x2, lowp.dtype), lowp), tf.float32)  # (N, in) @ (in, out) -> (N, out)
        if self.bias is not None:
            y = tf.nn.bias_add(y, self.bias)
        if self._act is not None and activate:
            y = self._act(y)
        return tf.reshape(y, tf.concat([shape[:-1], [self.units]], 0))  # (N, out) -> (..., out)

    def apply_activation(self, y):
        return self._act(y) if self._act is not None else y

    def get_config(self):
        return {**super().get_config(), "in_features": self.in_features, "units": self.units,
                "initializer_range": self.initializer_range, "activation": self.activation, "use_bias": self.use_bias}


class Embedding(keras.layers.Embedding):
    """A (rows, dim) lookup table that exists from construction, initialised as transformers does."""

    def __init__(self, rows: int, dim: int, initializer_range: float = 0.02, **kwargs):
        super().__init__(rows, dim, embeddings_initializer=weight_initializer(initializer_range), **kwargs)
        self.initializer_range = initializer_range
        self.build()

    def get_config(self):
        return {**keras.layers.Layer.get_config(self), "rows": self.input_dim, "dim": self.output_dim,
                "initializer_range": self.initializer_range}


class LayerNorm(keras.layers.LayerNormalization):
    """LayerNorm over the last axis (width `dim`) with the checkpoint's epsilon: Keras's default of 1e-3
    is not what these models were trained with. `bias=False` is `nn.LayerNorm(..., bias=False)`: a scale only."""

    def __init__(self, dim: int, eps: float, name: str = "LayerNorm", bias: bool = True, **kwargs):
        super().__init__(epsilon=eps, name=name, center=bias, **kwargs)
        self.dim = dim
        self.build((None, dim))

    def get_config(self):
        return {**keras.layers.Layer.get_config(self), "dim": self.dim, "eps": self.epsilon, "bias": self.center}


class TiedDecoder(keras.layers.Layer):
    """Hidden states -> vocabulary logits through the word-embedding matrix (tied weights) plus a bias.

    The embedding matrix is the encoder's own variable, held here under a private name so that the
    naming rule (`checkpoint.hub_variables`) sees it once, where it lives, and `save_pretrained`
    writes it once. Masked-LM heads subclass this when their Hub module holds the bias itself.
    """

    def __init__(self, word_embeddings: Embedding, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self._word_embeddings = word_embeddings
        self.bias = self.add_weight(shape=(word_embeddings.input_dim,), initializer="zeros", name="bias") \
            if use_bias else None

    def decode(self, x):
        """x: (B, T, C) -> logits (B, T, vocab)."""
        B, T, C = tf.shape(x)[0], tf.shape(x)[1], x.shape[-1]
        table = self._word_embeddings.embeddings  # (vocab, C)
        logits = tf.matmul(tf.reshape(x, (-1, C)), table, transpose_b=True)  # (B*T, C) @ (C, vocab) -> (B*T, vocab)
        if self.bias is not None:
            logits = tf.nn.bias_add(logits, self.bias)
        return tf.reshape(logits, (B, T, -1))  # (B*T, vocab) -> (B, T, vocab)

    def call(self, x):
        return self.decode(x)


def multi_head_attention(q, k, v, mask, num_heads: int, dropout: keras.layers.Layer, training=False):
    """Scaled dot-product attention over `num_heads` heads.

    q, k, v: (B, T, C) projections; mask: additive (B, 1, 1, T).
    Returns the context (B, T, C) and the attention probabilities (B, H, T, T).
    """
    B, T, C = tf.shape(q)[0], tf.shape(q)[1], q.shape[-1]
    D = C // num_heads

    def heads(x, name):  # (B, T, C) -> (B, T, H, D), a hook point -> (B, H, T, D)
        return tf.transpose(hook(name, tf.reshape(x, (B, T, num_heads, D))), (0, 2, 1, 3))

    scores = tf.matmul(heads(q, "attn.hook_q"), heads(k, "attn.hook_k"), transpose_b=True)  # (B, H, T, D) @ (B, H, D, T) -> (B, H, T, T)
    scores = hook("attn.hook_attn_scores", scores * (1.0 / math.sqrt(D)) + mask)  # mask (B, 1, 1, T) broadcasts
    probs = hook("attn.hook_pattern", tf.nn.softmax(scores, axis=-1))  # over keys
    context = tf.matmul(dropout(probs, training=training), heads(v, "attn.hook_v"))  # (B, H, T, T) @ (B, H, T, D) -> (B, H, T, D)
    context = hook("attn.hook_z", tf.transpose(context, (0, 2, 1, 3)))  # (B, H, T, D) -> (B, T, H, D)
    return tf.reshape(context, (B, T, C)), probs  # (B, T, H, D) -> (B, T, C)


class ConfigLayer(keras.layers.Layer):
    """A layer built from a model config; `get_config` round-trips through the config's dict."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, cfg):
        from .config import config_class_for

        cfg = dict(cfg)
        d = cfg.pop("config")
        return cls(config_class_for(d.get("model_type")).from_dict(d), **cfg)


class LayerStack(ConfigLayer):
    """`layer[0]`, ..., `layer[num_layers - 1]`, blocks of `block_class`, applied in turn, keeping every
    hidden state and attention map. Block i's hook names are `blocks.{i}.…` (`interp`); its input and output
    are `hook_resid_pre` and `hook_normalized_resid_post` (every block here is post-LN)."""

    def __init__(self, config, block_class: type, num_layers: int, **kwargs):
        super().__init__(config, **kwargs)
        self.block_class = block_class
        self.layer = [block_class(config, name=f"layer_{i}") for i in range(num_layers)]

    def call(self, x, attn_mask, training=False):
        """x: (B, T, C); attn_mask: additive (B, 1, 1, T). Returns [embeddings, layer 0, ...] and each layer's (B, H, T, T)."""
        hidden, attentions = [x], []  # hidden[0] is the embeddings' output
        for i, block in enumerate(self.layer):
            with hook_block(i):
                x = hook("hook_resid_pre", x)
                x, probs = block(x, attn_mask=attn_mask, training=training)
                x = hook("hook_normalized_resid_post", x)
            hidden.append(x)
            attentions.append(probs)
        return hidden, attentions

    def get_config(self):
        return {**super().get_config(), "num_layers": len(self.layer),
                "block_class": f"{self.block_class.__module__}:{self.block_class.__qualname__}"}

    @classmethod
    def from_config(cls, cfg):
        import importlib

        cfg = dict(cfg)
        module, _, name = cfg.pop("block_class").partition(":")
        cfg["block_class"] = getattr(importlib.import_module(module), name)
        return super().from_config(cfg)
