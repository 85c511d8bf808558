"""`PreTrainedModel`: what every minibert model shares, around its family's layers.

- `__call__` accepts what transformers' models accept (the tokenizer's dict, tf tensors, numpy
  arrays or nested lists; a 1-D `input_ids` is a batch of one), checks it, and hands the model's
  `call` clean int32 tensors. Bad input is refused here with a message naming the limit, before
  TensorFlow sees it (on GPU, `tf.gather` would silently return zeros for out-of-range ids).
- `from_pretrained` / `save_pretrained` delegate all file work to `checkpoint.py`.
"""
from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from .config import PretrainedConfig
from .layers import no_random_init

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class PreTrainedModel(keras.Model):
    config_class: type[PretrainedConfig] = PretrainedConfig
    base_model_prefix = ""

    def __init__(self, config: PretrainedConfig | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config = config if config is not None else self.config_class()

    # -- building ------------------------------------------------------------------------------
    def build(self, input_shape=None):
        """Models create every variable up front (see `_build_all`); heads override this."""

    def _build_all(self):
        # Children build their own sublayers from the config; we need no example input. Creating
        # every variable now lets `from_pretrained` assign weights before the first call.
        for child in self._layers:
            if not child.built and hasattr(child, "config"):
                child.build()
        self.build()
        self.built = True

    def get_config(self):
        return {"name": self.name, "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config, **kwargs):
        """Accepts a model config object (as transformers' `from_config`) or Keras's `get_config()` dict."""
        if isinstance(config, Mapping):
            config = dict(config)
            name = config.pop("name", None)
            d = config.pop("config", config)
            return cls(cls.config_class.from_dict(d), name=name, **kwargs)
        return cls(config, **kwargs)

    # -- calling -------------------------------------------------------------------------------
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, output_hidden_states=False,
                 output_attentions=False, training=False, return_dict=True, **kwargs):
        if isinstance(input_ids, Mapping):  # model(tokenizer(...)), as in the seed
            given = dict(input_ids)
            unknown = set(given) - set(INPUT_NAMES)
            if unknown:
                raise TypeError(f"unexpected model inputs {sorted(unknown)}; expected some of {list(INPUT_NAMES)}")
            input_ids = given.get("input_ids")
            attention_mask = given.get("attention_mask", attention_mask)
            token_type_ids = given.get("token_type_ids", token_type_ids)
        if kwargs:
            raise TypeError(f"unexpected keyword arguments {sorted(kwargs)}")
        ids, mask, types = self.prepare_inputs(input_ids, attention_mask, token_type_ids)
        if training or not tf.executing_eagerly():  # training, or inside someone else's tf.function
            ids, mask, types = (tf.convert_to_tensor(x) for x in (ids, mask, types))
            out = super().__call__(ids, mask, types, output_hidden_states=output_hidden_states,
                                   output_attentions=output_attentions, training=training)
        else:
            out = self.compiled_forward(bool(output_hidden_states), bool(output_attentions))(ids, mask, types)
        return out if return_dict else out.to_tuple()

    def compiled_forward(self, output_hidden_states=False, output_attentions=False):
        """The inference forward as compiled TensorFlow graphs, one `CompiledForward` per output choice."""
        key = (output_hidden_states, output_attentions)
        fns = self.__dict__.setdefault("_compiled", {})  # plain dict, kept out of Keras's tracking
        if key not in fns:
            fns[key] = CompiledForward(self, output_hidden_states, output_attentions)
        return fns[key]

    def prepare_inputs(self, input_ids, attention_mask=None, token_type_ids=None):
        """(B, T) int32 inputs: converted, defaults filled (mask of ones, token types of zeros), validated.

        Called eagerly (the usual case), the work is done in numpy, which costs microseconds where a
        dozen small TensorFlow ops cost about a millisecond. Inside someone else's `tf.function` the
        inputs are symbolic: they are only shaped and cast there.
        """
        if input_ids is None:
            raise ValueError("input_ids is required")
        if not tf.executing_eagerly():
            ids = tf.convert_to_tensor(input_ids)
            ids = ids[None, :] if ids.shape.rank == 1 else ids
            mask = tf.ones_like(ids) if attention_mask is None else tf.reshape(attention_mask, tf.shape(ids))
            types = tf.zeros_like(ids) if token_type_ids is None else tf.reshape(token_type_ids, tf.shape(ids))
            return tf.cast(ids, tf.int32), tf.cast(mask, tf.int32), tf.cast(types, tf.int32)

        def batch_of(x, name):  # -> (B, T); a single sequence is a batch of one
            a = _as_int_array(x, name)
            a = a[None, :] if a.ndim == 1 else a
            if a.ndim != 2:
                raise ValueError(f"{name} must be (batch, seq) or (seq,), got shape {a.shape}")
            return a

        ids = batch_of(input_ids, "input_ids")
        mask = np.ones_like(ids) if attention_mask is None else batch_of(attention_mask, "attention_mask")
        types = np.zeros_like(ids) if token_type_ids is None else batch_of(token_type_ids, "token_type_ids")
        for name, a in (("attention_mask", mask), ("token_type_ids", types)):
            if a.shape != ids.shape:
                raise ValueError(f"{name} has shape {a.shape} but input_ids has {ids.shape}")
        self._check_ranges(ids, types)  # on int64, before the cast could wrap a huge id into range
        return ids.astype(np.int32), mask.astype(np.int32), types.astype(np.int32)

    def _check_ranges(self, ids: np.ndarray, types: np.ndarray):
        c = self.config
        T = ids.shape[1]
        if T > c.max_position_embeddings:
            raise ValueError(
                f"sequence length {T} exceeds max_position_embeddings={c.max_position_embeddings}; "
                "truncate it (tokenizer(..., truncation=True))"
            )
        if T == 0 or ids.shape[0] == 0:
            raise ValueError(f"input_ids is empty (shape {ids.shape})")
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= c.vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {c.vocab_size})")
        n_types = getattr(c, "type_vocab_size", 1)
        lo, hi = int(types.min()), int(types.max())
        if lo < 0 or hi >= n_types:
            raise ValueError(f"token_type_id {lo if lo < 0 else hi} is outside [0, {n_types}) (type_vocab_size)")

    # -- files ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path, config: PretrainedConfig | None = None, *, revision=None,
                        local_files_only=False, cache_dir=None, token=None, output_loading_info=False,
                        **config_overrides):
        """Build the model from `config.json` and load `model.safetensors` (or its shards).

        `name_or_path` is a local folder or a Hub id (resolved and cached by huggingface_hub).
        Extra keyword arguments override config fields, e.g. `num_labels=3`.
        """
        from . import checkpoint

        folder = checkpoint.resolve(name_or_path, revision=revision, local_files_only=local_files_only,
                                    cache_dir=cache_dir, token=token)
        if config is None:
            config = cls.config_class.from_pretrained(folder, **config_overrides)
        state = checkpoint.read_state_dict(folder)
        with no_random_init():  # every weight is about to be overwritten
            model = cls(config)
        info = checkpoint.load_weights(model, state, source=str(name_or_path))
        variables = checkpoint.hub_variables(model)
        fixed = "position_embeddings" if getattr(config, "sinusoidal_pos_embds", False) else None  # set in build
        for name in info.missing_keys:  # not in the checkpoint: initialise as a fresh model would
            if name.endswith("weight") and len(variables[name].shape) == 2 and not (fixed and fixed in name):
                init = keras.initializers.RandomNormal(stddev=config.initializer_range)
                variables[name].assign(init(variables[name].shape))
        return (model, info) if output_loading_info else model

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `config.json` and `model.safetensors` under Hub names (transformers loads the folder)."""
        from . import checkpoint

        checkpoint.save(self, save_directory)


# Small inputs (a few sentences) run under XLA on inputs padded up to one of these shapes.
XLA_BATCHES = (1, 2, 4)
XLA_SEQS = (16, 32, 48, 64, 96, 128)


class CompiledForward:
    """`model.call` as compiled graphs, with a bounded number of compilations whatever the inputs.

    Two paths, chosen by input size, both measured with scripts/bench.py:
    - small inputs (batch <= 4, sequence <= 128: interactive use) run under XLA, which fuses the
      element-wise work into the matmuls: distilbert-base at 1 x 16 took 14.8 ms against 17.8 ms
      as a plain graph (AMD EPYC, 2 cores; 14.7 against 20.7 ms on a Xeon).
      XLA compiles once per input shape, so inputs are padded up to a bucket (XLA_BATCHES x
      XLA_SEQS: at most 18 shapes). Padding is masked, so real positions do not change (a row
      whose mask is all zeros is the exception, so a batch holding one is not padded);
    - larger inputs run as a plain graph with open batch and sequence dimensions: traced once, no
      padding waste. There XLA gained under 10% and padding to a bucket cost more than that.
    """

    def __init__(self, model, output_hidden_states: bool, output_attentions: bool):
        self.model = model
        self.max_len = model.config.max_position_embeddings
        self.shapes: set[tuple[int, int]] = set()  # the padded shapes XLA has compiled
        self._out_cls = None
        spec = tf.TensorSpec([None, None], tf.int32)

        def forward(ids, mask, types):
            out = model.call(ids, mask, types, output_hidden_states, output_attentions, training=False)
            self._out_cls = type(out)  # a Python value, read at trace time
            return dict(out)

        self.xla = tf.function(forward, input_signature=[spec] * 3, jit_compile=True)
        self.graph = tf.function(forward, input_signature=[spec] * 3)

    def bucket(self, batch: int, seq: int):
        """The padded XLA shape for this input, or None when it is not small."""
        b = next((x for x in XLA_BATCHES if x >= batch), None)
        t = next((x for x in XLA_SEQS if x >= seq), None)
        if b is None or t is None:
            return None
        return b, min(t, self.max_len)  # never past the position table

    def __call__(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray):
        """(B, T) int32 arrays, as `prepare_inputs` returns them, to the model's output object."""
        B, T = ids.shape
        shape = self.bucket(B, T)
        # A row with no real token attends uniformly to all its keys (as in transformers); padding
        # would add keys to that average, so such batches take the unpadded path.
        if shape is None or mask.max(axis=1).min() == 0:
            compiles = self.graph.experimental_get_tracing_count() == 0
            result = self.graph(ids, mask, types)
        else:
            compiles = shape not in self.shapes
            self.shapes.add(shape)
            padded = shape != (B, T)
            if padded:
                pad = ((0, shape[0] - B), (0, shape[1] - T))  # id 0 with mask 0: masked keys, discarded rows
                ids, mask, types = np.pad(ids, pad), np.pad(mask, pad), np.pad(types, pad)
            result = self.xla(ids, mask, types)
            if padded:
                result = {k: _unpad(k, v, B, T) for k, v in result.items()}
        if compiles:
            release_free_memory()
        return self._out_cls(**result)  # set while tracing


def release_free_memory():
    """Give the memory that malloc holds free back to the OS (glibc; elsewhere this does nothing).

    Compiling a forward (grappler's passes, XLA's LLVM) frees much working memory that glibc keeps
    mapped: returning it after each compilation took peak RSS during the SST-2 corpus from about
    1300 to 1260 MB in scripts/bench.py, for a few milliseconds once per compiled shape.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _unpad(key, value, B, T):
    if isinstance(value, (tuple, list)):
        return tuple(_unpad(key, v, B, T) for v in value)
    if key == "attentions":
        return value[:B, :, :T, :T]  # (B, H, T, T)
    if value.shape.rank == 3:
        return value[:B, :T]  # (B, T, C)
    return value[:B]  # (B, C) or (B, num_labels)


def _as_int_array(x, name: str) -> np.ndarray:
    if isinstance(x, tf.Tensor):
        if not x.dtype.is_integer:
            raise TypeError(f"{name} must hold integers, got {x.dtype.name}")
        return x.numpy().astype(np.int64, copy=False)
    try:
        a = np.asarray(x)
    except ValueError:
        raise ValueError(f"{name} rows have different lengths; pad them (tokenizer(..., padding=True))") from None
    if a.dtype == object:
        raise ValueError(f"{name} rows have different lengths or non-integer values; pad them (tokenizer(..., padding=True))")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got {a.dtype}")
    return a.astype(np.int64, copy=False)
