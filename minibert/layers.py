"""Pieces shared by every model family: activations, the attention mask, multi-head attention maths.

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
    mask = tf.cast(attention_mask, dtype)[:, None, None, :]  # (B, 1, 1, T)
    return (1.0 - mask) * dtype.min


# While a checkpoint is being loaded, weights start uninitialised: drawing ~66M random numbers (or
# writing zeros) that are overwritten at once took most of a distilbert-base load, and oneDNN's
# allocator keeps the freed buffers, so zeros cost 80 MB of resident memory too. Weights the
# checkpoint lacks are drawn afterwards (see `PreTrainedModel.from_pretrained`).
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
    """PyTorch's `nn.Linear` computed as Keras's Dense does: y = x @ kernel + bias, `kernel` [in, out],
    with an optional activation applied to the result.

    Hub checkpoints store this matrix as `weight` [out, in]; `checkpoint.py` transposes it on load
    and save, and is the only place that does. [in, out] is also the faster layout on the 2 AMD EPYC
    cores we measured (distilbert-base, bench.py's workloads): 16.7 ms against 22.4 ms for one
    16-token sentence, 10.4 s against 11.2 s for the SST-2 dev corpus, where oneDNN's matmul with a
    transposed right operand is slow at few rows (36 ms against 12.7 ms for the 36 matmuls alone).
    (On an earlier Xeon, [out, in] was the faster one under XLA at 16 tokens: 12.7 against 16.3 ms.)
    The matmul, `bias_add` and activation sit next to each other on a 2-D tensor so that
    TensorFlow's oneDNN remapper fuses them into one kernel: at 4096 tokens, matmul + bias + exact
    GELU took 46.7 ms fused against 66.7 ms as separate ops (the matmul alone: 48.4 ms).
    """

    def __init__(self, units: int, initializer_range: float = 0.02, activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.initializer_range = initializer_range
        self.activation = activation
        self._act = get_activation(activation) if activation else None

    def build(self, input_shape):
        init = weight_initializer(self.initializer_range)
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer=init, name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, x):
        shape = tf.shape(x)
        x2 = tf.reshape(x, (-1, x.shape[-1]))  # (..., in) -> (N, in)
        y = tf.nn.bias_add(tf.matmul(x2, self.kernel), self.bias)  # (N, in) @ (in, out) -> (N, out)
        if self._act is not None:
            y = self._act(y)
        return tf.reshape(y, tf.concat([shape[:-1], [self.units]], 0))  # (N, out) -> (..., out)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "initializer_range": self.initializer_range,
                "activation": self.activation}


def dense(units: int, name: str, initializer_range: float, activation: str | None = None) -> Linear:
    return Linear(units, initializer_range, activation, name=name)


def embedding(n: int, dim: int, name: str, initializer_range: float) -> keras.layers.Embedding:
    return keras.layers.Embedding(n, dim, embeddings_initializer=weight_initializer(initializer_range), name=name)


def layer_norm(eps: float, name: str = "LayerNorm") -> keras.layers.LayerNormalization:
    # Keras's default epsilon is 1e-3; the checkpoints were trained with 1e-12: always pass it.
    return keras.layers.LayerNormalization(epsilon=eps, name=name)


def multi_head_attention(q, k, v, mask, num_heads: int, dropout: keras.layers.Layer, training=False):
    """Scaled dot-product attention over `num_heads` heads.

    q, k, v: (B, T, C) projections; mask: additive (B, 1, 1, T).
    Returns the context (B, T, C) and the attention probabilities (B, H, T, T).
    """
    B, T, C = tf.shape(q)[0], tf.shape(q)[1], q.shape[-1]
    D = C // num_heads

    def heads(x):  # (B, T, C) -> (B, H, T, D)
        return tf.transpose(tf.reshape(x, (B, T, num_heads, D)), (0, 2, 1, 3))

    scores = tf.matmul(heads(q), heads(k), transpose_b=True)  # (B, H, T, D) @ (B, H, D, T) -> (B, H, T, T)
    scores = scores * (1.0 / math.sqrt(D)) + mask  # mask (B, 1, 1, T) broadcasts over heads and queries
    probs = tf.nn.softmax(scores, axis=-1)  # over keys
    context = tf.matmul(dropout(probs, training=training), heads(v))  # (B, H, T, T) @ (B, H, T, D) -> (B, H, T, D)
    context = tf.reshape(tf.transpose(context, (0, 2, 1, 3)), (B, T, C))  # (B, T, H, D) -> (B, T, C)
    return context, probs


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
    """`layer[0]`, ..., `layer[n-1]` applied in turn, keeping every hidden state and attention map.

    Subclasses name the block class and the config field that counts the blocks.
    """

    block_class: type = None
    num_layers_field: str = ""

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        n = getattr(config, self.num_layers_field)
        self.layer = [self.block_class(config, name=f"layer_{i}") for i in range(n)]

    def build(self, input_shape=None):
        for block in self.layer:
            block.build()

    def call(self, x, mask, training=False):
        hidden, attentions = [x], []  # hidden[0] is the embeddings' output
        for block in self.layer:
            x, probs = block(x, mask, training=training)
            hidden.append(x)
            attentions.append(probs)
        return hidden, attentions
