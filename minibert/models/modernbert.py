"""ModernBERT, as differences from BERT (`models/bert.py`).

Mirrors the eager path of transformers' `models/modernbert/modeling_modernbert.py`. What differs:
- embeddings are `tok_embeddings -> norm -> drop`: no position or token-type tables;
- positions are rotary: q and k are rotated by angle `position / theta^(2i/D)`, with `global_rope_theta`
  on global layers and `local_rope_theta` on the others;
- layer i is global when `i % global_attn_every_n_layers == 0`; the others are sliding-window layers where
  a query sees keys at most `local_attention // 2` positions away;
- blocks are pre-norm (`x + attn(attn_norm(x))`, `x + mlp(mlp_norm(x))`), layer 0 has no `attn_norm`,
  the encoder ends with `final_norm`; q, k, v are one `Wqkv` projection; the MLP is GeGLU
  (`input, gate = Wi(x).chunk(2)` then `Wo(act(input) * gate)`); projections and LayerNorms carry no bias
  unless `attention_bias`, `mlp_bias`, `norm_bias` say so;
- `hidden_states[-1]` is the last layer's output *before* `final_norm`, as transformers returns it;
- every head starts with `head` (dense -> act -> norm) then `drop` -> `classifier`; the sequence
  classifier pools `[CLS]` or the mean of the real tokens (`classifier_pooling`); the masked LM's
  `decoder` is tied to `tok_embeddings` (with `decoder_bias`).

Long inputs: a sliding-window layer computes its scores block by block (`banded_attention`: each block of
`local_attention // 2` queries against its own and the two neighbouring key blocks), so its memory grows with
the window, not with the square of the length; a global layer takes its queries in chunks
(`chunked_attention`), so it holds (chunk x length) scores rather than (length x length). Asked for the
attention maps, every layer computes them whole, as transformers does.
"""
from __future__ import annotations

import numpy as np
import keras
import tensorflow as tf

from ..config import ConfigError, ModernBertConfig
from ..heads import (ForMaskedLM, ForMultipleChoice, ForQuestionAnswering, ForSequenceClassification,
                     ForTokenClassification, HeadModel)
from ..layers import (ACTIVATIONS, ConfigLayer, Embedding, LayerNorm, Linear, TiedDecoder, additive_attention_mask,
                      get_activation, multi_head_attention)
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput

# A global layer's queries go this many at a time past this length: (chunk x T) scores instead of (T x T).
GLOBAL_QUERY_CHUNK = 512
# A sliding-window layer runs banded past this many half-windows: below it, banding computes as many scores.
LOCAL_WHOLE_UP_TO = 3


def _activation(config: ModernBertConfig, field: str):
    name = getattr(config, field)
    if name not in ACTIVATIONS:
        raise ConfigError(f"{field}={name!r} is not supported (supported: {', '.join(sorted(ACTIVATIONS))})")
    return get_activation(name)


# -- rotary positions ---------------------------------------------------------------------------------
def inverse_frequencies(head_dim: int, theta: float) -> np.ndarray:
    """transformers' default RoPE frequencies `1 / theta^(2i / D)`, (D/2,) float32. The power is taken in
    float64 and rounded: that gives torch's float32 values but for a rare last-bit miss (one frequency of 64
    at D=128, theta 160000), where a float32 power misses one in six; an error of one ulp here grows with the
    position (at 8,192 tokens, 5e-4 of a radian)."""
    exponents = np.arange(0, head_dim, 2).astype(np.float32) / np.float32(head_dim)
    return np.float32(1.0) / np.power(np.float64(theta), exponents.astype(np.float64)).astype(np.float32)


def rotary_tables(T, head_dim: int, theta: float):
    """cos and sin of each position's angles, both (T, D); each frequency twice, as `rotate_half` pairs
    dimension i with i + D/2."""
    inv = tf.constant(inverse_frequencies(head_dim, theta))  # (D/2,)
    angles = tf.cast(tf.range(T), tf.float32)[:, None] * inv[None, :]  # (T, 1) * (1, D/2) -> (T, D/2)
    angles = tf.concat([angles, angles], axis=-1)  # (T, D)
    return tf.cos(angles), tf.sin(angles)


def apply_rotary(x, cos, sin):
    """x: (B, T, H, D); cos, sin: (T, D) -> x rotated, (B, T, H, D)."""
    half = x.shape[-1] // 2
    rotated = tf.concat([-x[..., half:], x[..., :half]], axis=-1)  # rotate_half: (x1, x2) -> (-x2, x1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]  # (T, 1, D) broadcasts over batch and heads


# -- attention for long inputs ------------------------------------------------------------------------
def banded_attention(q, k, v, attention_mask, half_window: int, dropout, training=False):
    """Sliding-window attention (a query sees keys at most `half_window` away), block by block.

    q, k, v: (B, T, H, D), rotated; attention_mask: (B, T) of 1/0. Returns the context (B, T, H*D).
    The sequence is cut into n blocks of W = half_window queries; block i's keys are blocks i-1, i, i+1,
    which hold every key in reach of its queries. Scores are (B, H, n, W, 3W): linear in T. Keys out of
    reach, padding and the zeros padded in get float32.min, as the eager mask gives them; a query with no
    key left (a padding row far from any real token) gets what transformers gives it, the uniform
    average over all T keys.
    """
    B, T, H, D = tf.shape(q)[0], tf.shape(q)[1], q.shape[2], q.shape[3]
    W = max(half_window, 1)
    n = (T + W - 1) // W
    P = n * W  # T rounded up to whole blocks

    def blocks(x):  # (B, T, H, D) -> (B, H, n, W, D)
        x = tf.transpose(tf.pad(x, [[0, 0], [0, P - T], [0, 0], [0, 0]]), (0, 2, 1, 3))  # (B, H, P, D)
        return tf.reshape(x, (B, H, n, W, D))

    def neighbours(x):  # (B, P + 2W, ...), one block padded in each side -> 3 x (B, n, W, ...): blocks i-1, i, i+1
        return [tf.reshape(x[:, j * W: j * W + P], tf.concat([[B, n, W], tf.shape(x)[2:]], 0)) for j in range(3)]

    def keys(x):  # (B, T, H, D) -> (B, H, n, 3W, D)
        xp = tf.pad(x, [[0, 0], [W, P - T + W], [0, 0], [0, 0]])  # (B, P + 2W, H, D)
        parts = neighbours(xp)  # 3 x (B, n, W, H, D)
        return tf.transpose(tf.concat(parts, axis=2), (0, 3, 1, 2, 4))  # (B, n, 3W, H, D) -> (B, H, n, 3W, D)

    qb, kb, vb = blocks(q), keys(k), keys(v)
    scores = tf.matmul(qb, kb, transpose_b=True) * (D ** -0.5)  # (B, H, n, W, D) @ (B, H, n, D, 3W) -> (B, H, n, W, 3W)
    real = tf.pad(tf.cast(attention_mask, tf.bool), [[0, 0], [W, P - T + W]])  # (B, P + 2W): padded-in keys unreal
    real_keys = tf.concat(neighbours(real), axis=2)  # (B, n, 3W)
    offset = np.arange(W)[:, None] + W - np.arange(3 * W)[None, :]  # (W, 3W): query position - key position
    # int8 then cast: TensorFlow writes a bool constant into the graph element by element (minutes at W = 4096)
    in_window = tf.cast(tf.constant((np.abs(offset) <= half_window).astype(np.int8)), tf.bool)  # (W, 3W)
    # expand_dims, not [:, None]: the LiteRT converter cannot lower these new-axis slices at open shapes
    allowed = tf.logical_and(in_window, tf.expand_dims(real_keys, 2))  # (W, 3W) and (B, n, 1, 3W) -> (B, n, W, 3W)
    scores = scores + tf.expand_dims(tf.where(allowed, 0.0, tf.float32.min), 1)  # (B, 1, n, W, 3W) over heads
    probs = tf.nn.softmax(scores, axis=-1)
    context = tf.matmul(dropout(probs, training=training), vb)  # (B, H, n, W, 3W) @ (B, H, n, 3W, D) -> (B, H, n, W, D)
    context = tf.transpose(tf.reshape(context, (B, H, P, D)), (0, 2, 1, 3))[:, :T]  # (B, T, H, D)
    any_key = tf.reshape(tf.reduce_any(allowed, axis=-1), (B, P))[:, :T]  # (B, T)
    uniform = tf.reduce_mean(v, axis=1, keepdims=True)  # (B, 1, H, D): softmax of equal scores over all T keys
    context = tf.where(tf.reshape(any_key, (B, T, 1, 1)), context, uniform)
    return tf.reshape(context, (B, T, H * D))  # (B, T, H, D) -> (B, T, C)


def chunked_attention(q, k, v, mask, chunk: int, dropout, training=False):
    """Full attention with the queries taken `chunk` at a time, one chunk after the other, so that the
    scores held are (B, H, chunk, T). q, k, v: (B, T, H, D), rotated; mask: additive (B, 1, 1, T).
    Each row's softmax is over the same keys as in one piece. Returns the context (B, T, H*D)."""
    B, T, H, D = tf.shape(q)[0], tf.shape(q)[1], q.shape[2], q.shape[3]
    n = (T + chunk - 1) // chunk
    qs = tf.pad(q, [[0, 0], [0, n * chunk - T], [0, 0], [0, 0]])  # (B, n*chunk, H, D)
    qs = tf.transpose(tf.reshape(qs, (B, n, chunk, H, D)), (1, 0, 3, 2, 4))  # (n, B, H, chunk, D)
    kh, vh = tf.transpose(k, (0, 2, 1, 3)), tf.transpose(v, (0, 2, 1, 3))  # (B, H, T, D)

    def one(qc):  # (B, H, chunk, D) -> (B, H, chunk, D)
        # (B, H, chunk, D) @ (B, H, D, T) -> (B, H, chunk, T)
        scores = tf.matmul(qc, kh, transpose_b=True) * (D ** -0.5) + mask
        return tf.matmul(dropout(tf.nn.softmax(scores, axis=-1), training=training), vh)  # -> (B, H, chunk, D)

    # A while loop that writes each chunk's context into its slot (not map_fn, whose TensorList ops LiteRT cannot
    # lower): one chunk's scores in memory at a time, and a loop state of one shape, as XLA needs.
    def step(i, out):
        return i + 1, tf.tensor_scatter_nd_update(out, tf.reshape(i, (1, 1)), tf.expand_dims(one(qs[i]), 0))

    _, out = tf.while_loop(lambda i, _: i < n, step, (tf.constant(0), tf.zeros_like(qs)), parallel_iterations=1)
    # out: (n, B, H, chunk, D)
    out = tf.reshape(tf.transpose(out, (1, 0, 3, 2, 4)), (B, n * chunk, H * D))  # (B, n*chunk, C)
    return out[:, :T]


# -- layers -------------------------------------------------------------------------------------------
class ModernBertEmbeddings(ConfigLayer):
    """tok_embeddings -> norm -> drop: no positions (they are rotary) and no token types."""

    def __init__(self, config: ModernBertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.tok_embeddings = Embedding(c.vocab_size, c.hidden_size, c.initializer_range, name="tok_embeddings")
        self.norm = LayerNorm(c.hidden_size, c.norm_eps, name="norm", bias=c.norm_bias)
        self.drop = keras.layers.Dropout(c.embedding_dropout)

    def call(self, input_ids, training=False):
        return self.drop(self.norm(self.tok_embeddings(input_ids)), training=training)  # (B, T) -> (B, T, C)


class ModernBertAttention(ConfigLayer):
    """Wqkv -> rotary on q and k -> global or sliding-window attention -> Wo."""

    def __init__(self, config: ModernBertConfig, layer_id: int, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.layer_id = layer_id
        self.is_global = layer_id % c.global_attn_every_n_layers == 0
        self.half_window = None if self.is_global else c.local_attention // 2
        local_theta = c.local_rope_theta if c.local_rope_theta is not None else c.global_rope_theta
        self.rope_theta = c.global_rope_theta if self.is_global else local_theta
        self.Wqkv = Linear(c.hidden_size, 3 * c.hidden_size, c.initializer_range, use_bias=c.attention_bias,
                           name="Wqkv")
        self.Wo = Linear(c.hidden_size, c.hidden_size, c.initializer_range, use_bias=c.attention_bias, name="Wo")
        self.dropout = keras.layers.Dropout(c.attention_dropout)
        self.out_drop = keras.layers.Dropout(c.attention_dropout)

    def get_config(self):
        return {**super().get_config(), "layer_id": self.layer_id}

    def call(self, x, attention_mask, rotary, output_attentions=False, training=False):
        """x: (B, T, C); attention_mask: (B, T) of 1/0; rotary: theta -> (cos, sin), (T, D) each.
        Returns (B, T, C) and the probabilities (B, H, T, T) when output_attentions, else None."""
        B, T, C = tf.shape(x)[0], tf.shape(x)[1], x.shape[-1]
        H = self.config.num_attention_heads
        D = C // H
        qkv = tf.reshape(self.Wqkv(x), (B, T, 3, H, D))  # (B, T, 3C) -> (B, T, 3, H, D)
        cos, sin = rotary[self.rope_theta]
        q, k, v = apply_rotary(qkv[:, :, 0], cos, sin), apply_rotary(qkv[:, :, 1], cos, sin), qkv[:, :, 2]
        mask = additive_attention_mask(attention_mask)  # (B, 1, 1, T)

        def whole():  # transformers' eager attention: (T x T) scores, returns the maps
            m = mask
            if not self.is_global:  # keys further than half_window: float32.min (masked_fill, not added)
                pos = tf.range(T)
                near = tf.abs(pos[:, None] - pos[None, :]) <= self.half_window  # (T, T)
                m = tf.where(near[None, None], mask, tf.float32.min)  # (B, 1, T, T)
            flat = (B, T, C)  # (B, T, H, D) -> (B, T, C), as multi_head_attention takes them
            return multi_head_attention(tf.reshape(q, flat), tf.reshape(k, flat), tf.reshape(v, flat), m, H,
                                        self.dropout, training)

        if output_attentions:
            context, probs = whole()
        elif self.is_global:
            context = tf.cond(T > GLOBAL_QUERY_CHUNK, lambda: chunked_attention(
                q, k, v, mask, GLOBAL_QUERY_CHUNK, self.dropout, training), lambda: whole()[0])
            probs = None
        elif LOCAL_WHOLE_UP_TO * max(self.half_window, 1) >= self.config.max_position_embeddings:
            context = whole()[0]  # no input is long enough to band: not even traced, its blocks grow with the window
            probs = None
        else:
            W = max(self.half_window, 1)
            context = tf.cond(T > LOCAL_WHOLE_UP_TO * W, lambda: banded_attention(
                q, k, v, attention_mask, self.half_window, self.dropout, training), lambda: whole()[0])
            probs = None
        return self.out_drop(self.Wo(context), training=training), probs


class ModernBertMLP(ConfigLayer):
    """GeGLU: Wi (C -> 2 x intermediate), split into input and gate, act(input) * gate -> drop -> Wo."""

    def __init__(self, config: ModernBertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.act = _activation(c, "hidden_activation")
        self.Wi = Linear(c.hidden_size, 2 * c.intermediate_size, c.initializer_range, use_bias=c.mlp_bias, name="Wi")
        self.drop = keras.layers.Dropout(c.mlp_dropout)
        self.Wo = Linear(c.intermediate_size, c.hidden_size, c.initializer_range, use_bias=c.mlp_bias, name="Wo")

    def call(self, x, training=False):
        inputs, gate = tf.split(self.Wi(x), 2, axis=-1)  # (B, T, 2I) -> 2 x (B, T, I)
        return self.Wo(self.drop(self.act(inputs) * gate, training=training))  # (B, T, I) -> (B, T, C)


class ModernBertEncoderLayer(ConfigLayer):
    """Pre-norm: x + attn(attn_norm(x)), then + mlp(mlp_norm(x)). Layer 0 reads the embeddings' norm
    directly: it has no attn_norm."""

    def __init__(self, config: ModernBertConfig, layer_id: int, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.layer_id = layer_id
        if layer_id != 0:
            self.attn_norm = LayerNorm(c.hidden_size, c.norm_eps, name="attn_norm", bias=c.norm_bias)
        self.attn = ModernBertAttention(c, layer_id, name="attn")
        self.mlp_norm = LayerNorm(c.hidden_size, c.norm_eps, name="mlp_norm", bias=c.norm_bias)
        self.mlp = ModernBertMLP(c, name="mlp")

    def get_config(self):
        return {**super().get_config(), "layer_id": self.layer_id}

    def call(self, x, attention_mask, rotary, output_attentions=False, training=False):
        """x: (B, T, C) -> (B, T, C), and the attention maps or None."""
        h = self.attn_norm(x) if self.layer_id != 0 else x
        a, probs = self.attn(h, attention_mask=attention_mask, rotary=rotary, output_attentions=output_attentions,
                             training=training)
        x = x + a
        return x + self.mlp(self.mlp_norm(x), training=training), probs


class ModernBertModel(PreTrainedModel):
    """embeddings -> layers (global and sliding-window) -> final_norm: `last_hidden_state`; no pooler."""

    config_class = ModernBertConfig
    base_model_prefix = "model"

    def __init__(self, config: ModernBertConfig | None = None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        self.embeddings = ModernBertEmbeddings(c, name="embeddings")
        # `layers` is a Keras property; the trailing underscore is dropped when naming weights.
        self.layers_ = [ModernBertEncoderLayer(c, i, name=f"layers_{i}") for i in range(c.num_hidden_layers)]
        self.final_norm = LayerNorm(c.hidden_size, c.norm_eps, name="final_norm", bias=c.norm_bias)
        self.build()

    def call(self, input_ids, attention_mask, token_type_ids=None, output_hidden_states=False,
             output_attentions=False, training=False):
        c = self.config
        T, D = tf.shape(input_ids)[1], c.hidden_size // c.num_attention_heads
        rotary = {theta: rotary_tables(T, D, theta) for theta in {layer.attn.rope_theta for layer in self.layers_}}
        x = self.embeddings(input_ids, training=training)  # (B, T, C)
        hidden, attentions = [x], []
        for layer in self.layers_:
            x, probs = layer(x, attention_mask=attention_mask, rotary=rotary, output_attentions=output_attentions,
                             training=training)
            hidden.append(x)  # before final_norm, as transformers' hidden_states
            attentions.append(probs)
        return BaseModelOutput(last_hidden_state=self.final_norm(x),
                               hidden_states=tuple(hidden) if output_hidden_states else None,
                               attentions=tuple(attentions) if output_attentions else None)

    def head_input(self, hidden):
        """For `trace`: from the last layer's output (B, T, C), before final_norm, what a head reads."""
        return self.final_norm(hidden)[:, 0], "[CLS] after final_norm"


# -- heads --------------------------------------------------------------------------------------------
class ModernBertPredictionHead(ConfigLayer):
    """`head`: dense (bias if classifier_bias) -> classifier_activation -> norm."""

    def __init__(self, config: ModernBertConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.act = _activation(c, "classifier_activation")
        self.dense = Linear(c.hidden_size, c.hidden_size, c.initializer_range, use_bias=c.classifier_bias, name="dense")
        self.norm = LayerNorm(c.hidden_size, c.norm_eps, name="norm", bias=c.norm_bias)

    def call(self, x):
        return self.norm(self.act(self.dense(x)))  # (..., C) -> (..., C)


class ModernBertPreTrainedModel(HeadModel):
    """What every ModernBERT head shares: the body under `model`, then head -> drop -> classifier.

    Its heads read the attention mask (mean pooling, the first real token), so `call` hands it to `head`."""

    config_class = ModernBertConfig
    base_model_prefix = "model"
    pool_description = "[CLS] after final_norm -> head (dense -> act -> norm)"

    def make_body(self, with_pooler):
        return ModernBertModel(self.config, name="model")

    @property
    def num_outputs(self) -> int:
        return self.config.num_labels

    def build_head(self, c):
        # `head` is HeadModel's method; the trailing underscore is dropped when naming weights.
        self.head_ = ModernBertPredictionHead(c, name="head")
        self.drop = keras.layers.Dropout(c.classifier_dropout)
        self.classifier = Linear(c.hidden_size, self.num_outputs, c.initializer_range, name="classifier")

    def classify(self, x, training=False):
        return self.classifier(self.drop(self.head_(x), training=training))  # (..., C) -> (..., outputs)

    def call(self, input_ids, attention_mask, token_type_ids=None, output_hidden_states=False,
             output_attentions=False, training=False):
        out = self.body.call(input_ids=input_ids, attention_mask=attention_mask,
                             output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                             training=training)
        return self.output_class(**self.head(out, attention_mask, training=training),
                                 hidden_states=out.hidden_states, attentions=out.attentions)

    def head(self, out, attention_mask, training=False) -> dict:
        raise NotImplementedError

    def pooled(self, hidden, attention_mask, first_real: bool = False):
        """(B, T, C) after final_norm -> (B, C): `classifier_pooling` "cls" takes position 0 (the multiple-
        choice head: the first real token), "mean" the mean over real tokens."""
        if self.config.classifier_pooling == "mean":
            m = tf.cast(attention_mask, hidden.dtype)[:, :, None]  # (B, T, 1)
            return tf.reduce_sum(hidden * m, axis=1) / tf.reduce_sum(m, axis=1)  # (B, C)
        if first_real:  # transformers: attention_mask.argmax(-1), the first 1 (0 for a row of zeros)
            T = tf.shape(attention_mask)[1]
            first = tf.reduce_min(tf.where(attention_mask > 0, tf.range(T)[None, :], T), axis=-1)  # (B,)
            return tf.gather(hidden, tf.where(first == T, 0, first), batch_dims=1)  # (B, T, C) -> (B, C)
        return hidden[:, 0]

    def head_input(self, hidden):
        c = self.config
        if c.classifier_pooling == "mean":
            return self.body.final_norm(hidden), "every token after final_norm (mean over real tokens, then head)"
        return self.head_(self.body.final_norm(hidden)[:, 0]), self.pool_description


class ModernBertForSequenceClassification(ModernBertPreTrainedModel, ForSequenceClassification):
    """Pooled (cls or mean) final hidden state -> head -> drop -> classifier (hidden -> num_labels)."""

    def head(self, out, attention_mask, training=False):
        return {"logits": self.classify(self.pooled(out.last_hidden_state, attention_mask), training)}  # (B, labels)


class ModernBertForMultipleChoice(ModernBertPreTrainedModel, ForMultipleChoice):
    """Per choice: pooled (the first real token, or the mean) -> head -> drop -> classifier (hidden -> 1)."""

    @property
    def num_outputs(self) -> int:
        return 1

    def head(self, out, attention_mask, training=False):
        return {"logits": self.classify(self.pooled(out.last_hidden_state, attention_mask, first_real=True), training)}


class ModernBertForTokenClassification(ModernBertPreTrainedModel, ForTokenClassification):
    """Per token: head -> drop -> classifier (hidden -> num_labels)."""

    def head(self, out, attention_mask, training=False):
        return {"logits": self.classify(out.last_hidden_state, training)}  # (B, T, num_labels)

    def head_input(self, hidden):
        return self.body.final_norm(hidden), "last hidden state after final_norm, every token"


class ModernBertForQuestionAnswering(ModernBertPreTrainedModel, ForQuestionAnswering):
    """Per token: head -> drop -> classifier (hidden -> 2): where the answer starts and ends."""

    def build_head(self, c):
        if c.num_labels != 2:
            raise ConfigError(f"num_labels={c.num_labels}: ModernBertForQuestionAnswering's classifier has 2 outputs "
                              "(start, end)")
        super().build_head(c)

    def head(self, out, attention_mask, training=False):
        logits = self.classify(out.last_hidden_state, training)  # (B, T, 2)
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}  # (B, T) each

    head_input = ModernBertForTokenClassification.head_input


class ModernBertForMaskedLM(ModernBertPreTrainedModel, ForMaskedLM):
    """Per token: head -> decoder (tied to tok_embeddings unless tie_word_embeddings is false; bias if
    decoder_bias) -> logits over the vocabulary."""

    @property
    def tied_weights(self):
        return ("decoder.weight",) if self.config.tie_word_embeddings else ()

    def build_head(self, c):
        self.head_ = ModernBertPredictionHead(c, name="head")
        if c.tie_word_embeddings:
            self.decoder = TiedDecoder(self.body.embeddings.tok_embeddings, use_bias=c.decoder_bias, name="decoder")
        else:
            self.decoder = Linear(c.hidden_size, c.vocab_size, c.initializer_range, use_bias=c.decoder_bias,
                                  name="decoder")

    def head(self, out, attention_mask, training=False):
        return {"logits": self.decoder(self.head_(out.last_hidden_state))}  # (B, T, vocab_size)

    head_input = ModernBertForTokenClassification.head_input
