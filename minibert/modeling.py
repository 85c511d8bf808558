"""`PreTrainedModel`: what every minibert model shares, around its family's layers.

- `__call__` accepts what transformers' models accept (the tokenizer's dict, tf tensors, numpy
  arrays or nested lists; a 1-D `input_ids` is a batch of one), checks it, and hands the model's
  `call` clean int32 tensors. Bad input is refused here with a message naming the limit, before
  TensorFlow sees it (on GPU, `tf.gather` would silently return zeros for out-of-range ids).
- `from_pretrained` / `save_pretrained` delegate all file work to `checkpoint.py`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from . import interp, weight_changes
from .config import PretrainedConfig
from .layers import no_random_init

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class PreTrainedModel(keras.Model):
    config_class: type[PretrainedConfig] = PretrainedConfig
    base_model_prefix = ""

    # Hub names of tensors tied to another weight (a masked-LM decoder shares the word embeddings):
    # not written by `save_pretrained`, and skipped without a report when a checkpoint has them.
    tied_weights: tuple[str, ...] = ()
    # Multiple-choice models take (batch, choices, seq) inputs and give (batch, choices) logits.
    takes_choices = False
    # Architectures (config.json) whose checkpoints this class refuses, with the reason: a head that
    # would load them only to compute nonsense (an ELECTRA generator read as a discriminator).
    refused_architectures: dict[str, str] = {}

    def __init__(self, config: PretrainedConfig | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config = config if config is not None else self.config_class()

    def build(self, input_shape=None):
        """Every variable exists from construction (`layers.Linear`, `Embedding`, `LayerNorm`), so a
        model can be loaded before its first call: nothing is left to build."""
        self.built = True

    def get_config(self):
        return {"name": self.name, "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config, **kwargs):
        """Accepts a model config object (as transformers' `from_config`) or Keras's `get_config()` dict."""
        if isinstance(config, Mapping):
            config = dict(config)
            d = config.pop("config", None) or config
            extra = {k: v for k, v in config.items() if k in ("name", "add_pooling_layer")}
            return cls(cls.config_class.from_dict(d), **extra, **kwargs)
        return cls(config, **kwargs)

    # -- calling -------------------------------------------------------------------------------
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, output_hidden_states=False,
                 output_attentions=False, training=False, return_dict=True, **kwargs):
        if isinstance(input_ids, Mapping):  # model(tokenizer(...)), as in the course
            given = dict(input_ids)
            unknown = set(given) - set(INPUT_NAMES)
            if unknown:
                raise TypeError(f"unexpected model inputs {sorted(unknown)}; expected some of {list(INPUT_NAMES)}")
            input_ids = given.get("input_ids")
            attention_mask = given.get("attention_mask", attention_mask)
            token_type_ids = given.get("token_type_ids", token_type_ids)
        if kwargs:
            raise TypeError(f"unexpected keyword arguments {sorted(kwargs)}")
        choices = None
        if self.takes_choices:  # (B, N, T) -> (B * N, T): each choice is one sequence
            input_ids, attention_mask, token_type_ids, choices = _flatten_choices(input_ids, attention_mask, token_type_ids)
        ids, mask, types = self.prepare_inputs(input_ids, attention_mask, token_type_ids)
        # training, inside someone else's tf.function, or hooked (`interp`): the Keras layers, never the compiled paths
        if training or not tf.executing_eagerly() or interp.active():
            if training:
                weight_changes.note_training()
            ids, mask, types = (tf.convert_to_tensor(x) for x in (ids, mask, types))
            out = super().__call__(input_ids=ids, attention_mask=mask, token_type_ids=types,
                                   output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                                   training=training)
        else:
            out = self.compiled_forward(bool(output_hidden_states), bool(output_attentions))(ids, mask, types)
        if choices is not None:
            out["logits"] = tf.reshape(out.logits, (-1, choices))  # (B * N, 1) -> (B, N)
        return out if return_dict else out.to_tuple()

    # -- hooks and caches (TransformerLens's names; see `interp`) ----------------------------------------
    def run_with_cache(self, inputs, names_filter=None, fwd_hooks=(), **call_kwargs):
        """(outputs, cache): the call's outputs and {hook name: numpy array} for the names `names_filter`
        selects (None: all; a list of names, a prefix string or a predicate), after any `fwd_hooks`."""
        return interp.run_with_cache(self, inputs, names_filter, fwd_hooks, **call_kwargs)

    def run_with_hooks(self, inputs, fwd_hooks=(), **call_kwargs):
        """The call's outputs with `fwd_hooks`, [(name or predicate, fn)], active for this call only:
        fn(activation, name) returns a replacement of the same shape, or None to keep it."""
        return interp.run_with_hooks(self, inputs, fwd_hooks, **call_kwargs)

    def hook_names(self) -> list[str]:
        """Every hook name this model has, in forward order: what a full cache holds."""
        return interp.hook_names(self)

    def _head_weights(self, key):
        return interp.attention_weights(self)[key]  # numpy copies, read from the weights at each access

    W_Q = property(lambda self: self._head_weights("W_Q"), doc="[layer, head, d_model, d_head], a numpy copy")
    W_K = property(lambda self: self._head_weights("W_K"), doc="[layer, head, d_model, d_head], a numpy copy")
    W_V = property(lambda self: self._head_weights("W_V"), doc="[layer, head, d_model, d_head], a numpy copy")
    W_O = property(lambda self: self._head_weights("W_O"), doc="[layer, head, d_head, d_model], a numpy copy")
    b_Q = property(lambda self: self._head_weights("b_Q"), doc="[layer, head, d_head], a numpy copy")
    b_K = property(lambda self: self._head_weights("b_K"), doc="[layer, head, d_head], a numpy copy")
    b_V = property(lambda self: self._head_weights("b_V"), doc="[layer, head, d_head], a numpy copy")
    b_O = property(lambda self: self._head_weights("b_O"), doc="[layer, d_model], a numpy copy")

    def compiled_forward(self, output_hidden_states=False, output_attentions=False):
        """The inference forward: the LiteRT engine's (`engine.py`) when this model's engine is 'litert' and it can
        express the call, else compiled TensorFlow graphs, one `CompiledForward` per output choice.

        Hidden states, attention maps and calls under a `GradientTape` run on the graphs of the Keras layers.
        """
        key = (output_hidden_states, output_attentions)
        fns = self.__dict__.setdefault("_compiled", {})  # plain dict, kept out of Keras's tracking
        if key == (False, False) and self.engine == "litert" and not _taping():
            from . import engine

            forward = fns.get("litert")
            if "litert" not in fns or (forward is not None and forward.stamp.stale(self)):
                fns["litert"] = engine.forward_for(self)  # None (said once) where it cannot run; new weights reconvert
            if fns["litert"] is not None:
                return fns["litert"]
        if key not in fns:
            from .compiled import CompiledForward

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
        if mask.size and (mask.min() < 0 or mask.max() > 1):
            bad = mask.min() if mask.min() < 0 else mask.max()
            raise ValueError(f"attention_mask holds {bad}: it must be 1 for a real token and 0 for padding")
        return ids.astype(np.int32), mask.astype(np.int32), types.astype(np.int32)

    def _check_ranges(self, ids: np.ndarray, types: np.ndarray):
        c = self.config
        T = ids.shape[1]
        if T > c.max_sequence_length:
            limit = f"max_position_embeddings={c.max_position_embeddings}"
            if c.max_sequence_length != c.max_position_embeddings:
                limit = f"{c.max_sequence_length} tokens ({limit} less the padding offset)"
            raise ValueError(f"sequence length {T} exceeds {limit}; truncate it (tokenizer(..., truncation=True))")
        if T == 0 or ids.shape[0] == 0:
            raise ValueError(f"input_ids is empty (shape {ids.shape})")
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= c.vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {c.vocab_size})")
        n_types = c.type_vocab_size
        lo, hi = int(types.min()), int(types.max())
        if n_types and (lo < 0 or hi >= n_types):  # 0: the model has no token-type table and ignores them (DeBERTa-v3)
            raise ValueError(f"token_type_id {lo if lo < 0 else hi} is outside [0, {n_types}) (type_vocab_size)")

    # -- files ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path, config: PretrainedConfig | None = None, *, revision=None,
                        local_files_only=False, cache_dir=None, token=None, output_loading_info=False,
                        dtype=None, engine=None, **config_overrides):
        """Build the model from `config.json` and load `model.safetensors` (or its shards).

        `name_or_path` is a local folder or a Hub id (resolved and cached by huggingface_hub).
        `dtype="bfloat16"` or `"int8"` is an opt-in (see `set_dtype`); `engine` picks what runs inference
        ('keras' or 'litert', see `set_engine`). Extra keyword arguments override config fields, e.g. `num_labels=3`.
        """
        from . import checkpoint
        from .engine import engine_name

        dtype = matmul_dtype(dtype)  # bad values fail before anything is read
        if engine is not None:
            engine = engine_name(engine)
            if engine == "keras" and dtype == "int8":
                raise ValueError("dtype='int8' runs only on the litert engine; pass engine='litert' or leave engine out")

        folder = checkpoint.resolve(name_or_path, revision=revision, local_files_only=local_files_only,
                                    cache_dir=cache_dir, token=token)
        if config is None:
            config = cls.config_class.from_pretrained(folder, **config_overrides)
        for arch in config.extra.get("architectures") or []:
            if arch in cls.refused_architectures:
                raise checkpoint.CheckpointError(
                    f"{os.path.join(folder, 'config.json')} names {arch}: {cls.refused_architectures[arch]}")
        state = checkpoint.read_state_dict(folder)
        with no_random_init():  # every weight is about to be overwritten
            model = cls(config)
        info = checkpoint.load_weights(model, state, source=str(name_or_path))
        variables = checkpoint.hub_variables(model)
        for name in info.missing_keys:  # not in the checkpoint: initialise as a fresh model would
            if name.endswith("weight") and len(variables[name].shape) == 2 and name not in model.fixed_weights():
                init = keras.initializers.RandomNormal(stddev=config.initializer_range)
                variables[name].assign(init(variables[name].shape))
        if dtype != "float32":
            model.set_dtype(dtype)
        if engine is not None:
            model.set_engine(engine)
        return (model, info) if output_loading_info else model

    @property
    def engine(self) -> str:
        """'keras' or 'litert' (`engine.py`): the engine inference calls run on. int8 exists only on LiteRT."""
        if self.dtype_name == "int8":
            return "litert"
        if "_engine" not in self.__dict__:
            from .engine import engine_name

            self.__dict__["_engine"] = engine_name()  # the argument, MINIBERT_ENGINE or the CPU's default
        return self.__dict__["_engine"]

    def set_engine(self, engine=None) -> str:
        """Run inference on 'keras' or 'litert' (None: MINIBERT_ENGINE, else the CPU's default); returns it.

        The litert engine converts the weights as they are at the first call: after assigning new weights,
        call `set_engine` again (as `set_dtype` asks for bfloat16).
        """
        from .engine import engine_name

        name = engine_name(engine)
        if name == "keras" and self.dtype_name == "int8":
            raise ValueError("dtype='int8' runs only on the litert engine; pass engine='litert' or a float32 model")
        self.__dict__["_engine"] = name
        self.__dict__.pop("_compiled", None)
        return name

    @property
    def dtype_name(self) -> str:
        """The matmul weights' dtype: 'float32' (the default, held to parity), 'bfloat16' or 'int8' (LiteRT's)."""
        return self.__dict__.get("_matmul_dtype", "float32")

    def set_dtype(self, dtype) -> str:
        """Run the `Linear` matmuls (attention projections, feed-forward, heads) with bfloat16 weights and
        operands, or back in float32; returns the dtype in effect.

        An opt-in like transformers' `torch_dtype`, outside the float32 parity suite: embeddings, LayerNorm,
        softmax, the attention products and every output stay float32, and the float32 weights are kept
        (`save_pretrained` writes them unchanged). bfloat16 runs only where it is fast (oneDNN on a CPU with
        AVX512_BF16 or AMX); elsewhere one warning says why and the model stays float32. Such a model
        runs as a plain graph at every size (XLA's CPU bfloat16 matmuls were slower than float32). The
        bfloat16 kernels are copies made here: after assigning new weights, call `set_dtype` again.

        'int8' is the litert engine's dynamic-range quantisation (int8 weights, float32 activations; `engine.py`):
        the model then runs on LiteRT, and what the engine cannot express (hidden states, attention maps,
        gradients) runs on the float32 Keras layers.
        """
        import warnings

        from . import cpu
        from .layers import Linear

        dtype = matmul_dtype(dtype)
        if dtype == "int8" and self.__dict__.get("_engine") == "keras":
            raise ValueError("dtype='int8' runs only on the litert engine; call set_engine('litert') first")
        if dtype == "bfloat16" and (why := cpu.bfloat16_matmuls()):
            warnings.warn(f"dtype='bfloat16': {why}; the model runs in float32", stacklevel=2)
            dtype = "float32"
        for layer in self._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, Linear):  # a plain attribute, so no checkpoint or Keras weight list sees it
                layer.__dict__["_lowp_kernel"] = tf.cast(layer.kernel, tf.bfloat16) if dtype == "bfloat16" else None
        self.__dict__["_matmul_dtype"] = dtype
        self.__dict__.pop("_compiled", None)  # traced for the old dtype
        return dtype

    def fixed_weights(self) -> set[str]:
        """Hub names of weights that are computed, not learned (DistilBERT's sinusoidal positions)."""
        return set()

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `config.json` and `model.safetensors` under Hub names (transformers loads the folder)."""
        from . import checkpoint

        checkpoint.save(self, save_directory)


def matmul_dtype(dtype) -> str:
    """'float32', 'bfloat16' or 'int8' from what a user may pass (None, a name, a NumPy or TensorFlow dtype)."""
    if dtype is None:
        return "float32"
    name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or str(dtype)
    name = name.removeprefix("tf.").removeprefix("torch.")
    if name not in ("float32", "bfloat16", "int8"):
        raise ValueError("dtype must be 'float32', 'bfloat16' (bfloat16 matmul weights) or 'int8' (the litert "
                         f"engine's int8 weights), got {dtype!r}")
    return name


def _taping() -> bool:
    """Whether a `GradientTape` may be recording: gradients need the TensorFlow graph, not a flatbuffer."""
    from tensorflow.python.eager import record  # not exported; the one place TensorFlow tells

    return record.could_possibly_record()


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


def _flatten_choices(input_ids, attention_mask, token_type_ids):
    """(B, N, T) multiple-choice inputs -> (B * N, T) sequences, and N."""
    def flat(x, name):
        if x is None:
            return None
        if not tf.executing_eagerly() or isinstance(x, tf.Tensor):
            x = tf.convert_to_tensor(x)
            if x.shape.rank != 3:
                raise ValueError(f"multiple-choice {name} must be (batch, choices, seq), got shape {tuple(x.shape)}")
            return tf.reshape(x, (-1, tf.shape(x)[-1]))  # (B, N, T) -> (B * N, T)
        a = _as_int_array(x, name)
        if a.ndim != 3:
            raise ValueError(f"multiple-choice {name} must be (batch, choices, seq), got shape {a.shape}")
        return a.reshape(-1, a.shape[-1])  # (B, N, T) -> (B * N, T)

    if input_ids is None:
        raise ValueError("input_ids is required")
    n = (tf.convert_to_tensor(input_ids) if isinstance(input_ids, tf.Tensor) or not tf.executing_eagerly()
         else _as_int_array(input_ids, "input_ids"))
    if len(n.shape) != 3:
        raise ValueError(f"multiple-choice input_ids must be (batch, choices, seq), got shape {tuple(n.shape)}")
    return (flat(input_ids, "input_ids"), flat(attention_mask, "attention_mask"),
            flat(token_type_ids, "token_type_ids"), int(n.shape[1]))
