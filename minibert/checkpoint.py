"""Checkpoints: find a folder (local or Hub cache), read safetensors, map names onto layers, save.

The one naming rule: a variable's Hub name is the path of Python attributes from the model down to
its Keras layer (`distilbert.transformer.layer.3.attention.q_lin`), plus the variable's PyTorch
name (`weight` / `bias`). The one layout rule: a `Linear` kernel is [in, out] (Keras's Dense layout)
where the Hub's `weight` is [out, in], so it is transposed here, on load and on save, and nowhere
else (`hub_value`, `assign_hub_value`). Nothing here knows what attention is.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
HUB_FILES = ["config.json", SAFE_WEIGHTS, SAFE_INDEX, "model-*.safetensors", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt",
             "spm.model", "sentencepiece.bpe.model",
             # sentence-transformers folders: the module chain, its settings and its modules' own files
             "modules.json", "sentence_*config.json", "config_sentence_transformers.json", "*/config.json",
             "*/model.safetensors", "*/tokenizer.json", "*/tokenizer_config.json", "*/special_tokens_map.json",
             "*/vocab.txt"]

# The keyword arguments every `from_pretrained` passes on to `resolve` (huggingface_hub's).
HUB_KWARGS = ("revision", "local_files_only", "cache_dir", "token")

logger = logging.getLogger("minibert")


class CheckpointError(OSError):
    """A checkpoint that cannot be found, read or mapped onto the model."""


# -- finding a checkpoint ------------------------------------------------------------------------
def resolve(name_or_path, revision=None, local_files_only=False, cache_dir=None, token=None) -> str:
    """A local folder as is; otherwise a Hub repo id, downloaded into (or found in) huggingface_hub's cache.

    Honours `HF_HUB_OFFLINE`, `HF_HOME` / `cache_dir`, `revision` and `local_files_only`.
    """
    path = os.fspath(name_or_path)
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise CheckpointError(f"{path} is a file; pass the folder that holds config.json")
    if path.startswith((".", "/", "~")) or path.count("/") > 1 or os.sep != "/" and os.sep in path:
        raise CheckpointError(f"no such folder: {path}")
    import huggingface_hub
    from huggingface_hub.errors import HFValidationError

    try:
        return huggingface_hub.snapshot_download(
            path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
            token=token, allow_patterns=HUB_FILES,
        )
    except HFValidationError:
        raise CheckpointError(f"{path!r} is neither a local folder nor a valid Hub model id") from None
    except Exception as e:  # offline, not in cache, repo missing, network refused, ...
        raise CheckpointError(
            f"could not get {path!r} from the Hugging Face Hub or its local cache ({type(e).__name__}). "
            "Without network access, pass a local folder that holds config.json and model.safetensors "
            "(for example one written by save_pretrained), or set HF_HUB_OFFLINE=1 to use only the cache."
        ) from None


# safetensors' dtype names -> numpy's, for messages and for the conversion to the model's float32.
_DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
# Read and converted to float32: bfloat16 and float16 exactly, float64 rounded (said once, see load_weights).
_FLOATS = ("F32", "F16", "BF16", "F64")


class Tensors(Mapping):
    """Tensor name -> numpy array, from the safetensors headers: names, shapes and dtypes are known when the
    files are opened; a tensor's data is read only when it is looked up, so unused ones cost nothing."""

    def __init__(self):
        self.path, self.shapes, self.dtypes, self._files = {}, {}, {}, {}

    def add_file(self, path: str) -> None:
        from safetensors import safe_open

        handle = _rust_call(path, None, safe_open, path, framework="np")
        for key in handle.keys():
            if key in self.path:
                raise CheckpointError(f"tensor {key} is stored twice, in {self.path[key]} and in {path}: which copy is meant?")
            info = handle.get_slice(key)
            dtype = info.get_dtype()
            if dtype not in _FLOATS and not key.endswith(_IGNORED):  # the int position_ids buffer is never loaded
                why = ("not floating point: it cannot be a weight" if dtype in _DTYPE_NAMES else
                       "a dtype minibert does not read (float32, bfloat16, float16 or float64)")
                raise CheckpointError(f"tensor {key} in {path} is {_DTYPE_NAMES.get(dtype, dtype)}, {why}")
            self.path[key], self.shapes[key], self.dtypes[key] = path, tuple(info.get_shape()), dtype
        self._files[path] = handle

    def __getitem__(self, key) -> np.ndarray:
        import ml_dtypes  # noqa: F401  (a TensorFlow dependency: it teaches numpy the name "bfloat16")

        path = self.path[key]
        return _rust_call(path, key, self._files[path].get_tensor, key)

    def __iter__(self):
        return iter(self.path)

    def __len__(self):
        return len(self.path)


def _rust_call(path: str, key, fn, *args, **kwargs):
    """`fn(*args)` from safetensors, any failure a CheckpointError naming the file (and tensor).

    safetensors' Rust code panics when an allocation fails, and pyo3 raises that as PanicException, a
    BaseException that `except Exception` lets through: it is caught here by name (it cannot be imported)."""
    what = path if key is None else f"tensor {key} from {path}"
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # safetensors raises its own error type for bad headers and short files
        raise CheckpointError(f"cannot read {what}: {e} (is the file truncated or corrupt?)") from None
    except BaseException as e:
        if not is_rust_panic(e):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else "no message"
        raise CheckpointError(f"cannot read {what}: safetensors failed ({first}; out of memory?)") from None


def is_rust_panic(e: BaseException) -> bool:
    """pyo3's PanicException (a Rust library's panic): a BaseException, so `except Exception` misses it."""
    return type(e).__name__ == "PanicException"


def read_state_dict(folder: str) -> Tensors:
    """Every tensor in `model.safetensors`, or in the shards named by `model.safetensors.index.json`, read
    on demand (a `Tensors` mapping: names, shapes and dtypes from the headers, data when looked up).

    A tensor stored twice (in two shards) or stored as integers or booleans is an error: either would
    otherwise load silently, the last copy winning or the values cast to float32.
    """
    single, index = os.path.join(folder, SAFE_WEIGHTS), os.path.join(folder, SAFE_INDEX)
    # lexists, not isfile: a broken or looping link, or a directory, is reported as what it is below,
    # not as "no model.safetensors" while the folder listing shows one.
    if os.path.lexists(single):
        files = [single]
    elif os.path.lexists(index):
        files = shard_files(folder)
    else:
        present = sorted(os.listdir(folder))
        other = [n for n in present if n in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")]
        hint = (
            f" It has {', '.join(other)}: convert it once with transformers, e.g. "
            f"AutoModel.from_pretrained('{folder}').save_pretrained('{folder}') (writes model.safetensors)."
            if other else ""
        )
        raise CheckpointError(f"no {SAFE_WEIGHTS} or {SAFE_INDEX} in {folder} ({contents(folder)}).{hint}")
    state = Tensors()
    for path in files:
        problem = unreadable(path)
        if problem:
            listed = "" if path == single else f" (listed in {SAFE_INDEX})"
            raise CheckpointError(f"{path}{listed} {problem}")
        state.add_file(path)
    return state


def contents(folder) -> str:
    """What a folder holds, for an error message about a file it lacks."""
    present = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return f"it contains: {', '.join(present) or 'nothing'}"

def shard_files(folder: str) -> list[str]:
    """The shard files `folder`'s index names, each a regular file beside it, checked before any is opened
    (a device or FIFO would be read or waited on forever). The one check of an index: `runtime.py` calls it too."""
    index = os.path.join(folder, SAFE_INDEX)
    problem = unreadable(index)
    if problem:
        raise CheckpointError(f"{index} {problem}")
    try:
        with open(index, encoding="utf-8") as f:
            data = json.load(f)
    except ValueError as e:  # bad JSON or bad UTF-8
        raise CheckpointError(f"{index} is not valid JSON: {e}") from None
    except RecursionError:
        raise CheckpointError(f"{index} is nested too deeply to be a shard index") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{index} must hold a JSON object with a weight_map, not {type(data).__name__}")
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{index}: weight_map must be a JSON object from tensor name to shard file, "
                              f"not {type(weight_map).__name__}")
    for key, name in weight_map.items():
        # A shard lives beside its index: no path that reaches outside the folder.
        if not isinstance(name, str) or name in ("", ".", "..") or os.path.basename(name) != name or "/" in name:
            raise CheckpointError(f"{index}: weight_map[{key!r}] is {name!r}, not the file name of a shard in {folder}")
    files = [os.path.join(folder, name) for name in sorted(set(weight_map.values()))]
    for path in files:
        problem = unreadable(path)
        if problem:
            raise CheckpointError(f"{path} (listed in {SAFE_INDEX}) {problem}")
    return files


def unreadable(path: str) -> str | None:
    """Why `path` cannot be read as a regular file, in words; None when it can.

    safetensors reports every failure to open as "No such file or directory", so ask the OS first.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block us here
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symbolic link that loops (it points back to itself)"
        if e.errno == errno.ENOENT and os.path.islink(path):
            return f"is a broken symbolic link: its target {os.readlink(path)} does not exist"
        if e.errno == errno.ENOENT:
            return "does not exist"
        if e.errno in (errno.EACCES, errno.EPERM):
            return "cannot be read: permission denied"
        return f"cannot be opened: {e.strerror}"
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    return None


# -- the naming rule -----------------------------------------------------------------------------
# Keras's own layers name their variables differently from PyTorch: (Keras variable name) -> Hub name.
_KERAS_LEAVES = {"Embedding": {"embeddings": "weight"}, "LayerNormalization": {"gamma": "weight", "beta": "bias"}}
# Our own layers hold their variables under the Hub's names, except Linear's transposed kernel.
_RENAMED = {"kernel": "weight"}
# Old Google BERT checkpoints name LayerNorm params gamma/beta, as TensorFlow did: read them as weight/bias.
_LEGACY = {"gamma": "weight", "beta": "bias"}
_IGNORED = ("position_ids",)  # buffers some checkpoints store; recomputed, never loaded
_TRANSPOSED = ("kernel",)  # Keras [in, out] kernels; PyTorch's nn.Linear stores [out, in]


def hub_shape(var) -> tuple:
    """The shape the Hub stores this variable's tensor in."""
    shape = tuple(var.shape)
    return shape[::-1] if var.name in _TRANSPOSED else shape


def hub_value(var) -> np.ndarray:
    """The variable's value as the Hub stores it (C-contiguous, ready for safetensors)."""
    value = var.numpy()
    return np.ascontiguousarray(value.T) if var.name in _TRANSPOSED else value


def assign_hub_value(var, value: np.ndarray) -> None:
    """Set the variable from a tensor in the Hub's layout."""
    value = value.astype(np.float32, copy=False)
    var.assign(value.T if var.name in _TRANSPOSED else value)


def hub_variables(model) -> dict:
    """Hub name -> Keras variable for every weight of `model`, from its attribute tree.

    A variable held by attribute `bias` of the layer at attribute path `cls.predictions` is
    `cls.predictions.bias`. Private attributes (a tied decoder's reference to the word embeddings)
    are not followed, so a shared variable is named once, where it lives.
    """
    import keras

    out = {}

    def walk(obj, prefix):
        for base in type(obj).__mro__:  # Keras's Embedding / LayerNormalization, or our subclasses of them
            if base.__name__ in _KERAS_LEAVES and base.__module__.startswith("keras"):
                for var in obj.weights:
                    out[prefix + _KERAS_LEAVES[base.__name__][var.name]] = var
                return
        for attr, value in vars(obj).items():
            if attr.startswith("_"):
                continue
            attr = attr.rstrip("_")  # `output_`: Keras reserves `output`
            if isinstance(value, keras.Variable):
                out[prefix + _RENAMED.get(attr, attr)] = value
            elif isinstance(value, keras.layers.Layer):
                walk(value, f"{prefix}{attr}.")
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, keras.layers.Layer):
                        walk(item, f"{prefix}{attr}.{i}.")

    walk(model, "")
    return out


@dataclass
class LoadingInfo:
    missing_keys: list = field(default_factory=list)  # model weights the checkpoint did not have
    unexpected_keys: list = field(default_factory=list)  # checkpoint tensors the model did not use


def _canonical(name: str, prefix: str) -> str:
    """Drop the `{model_type}.` prefix and rename legacy gamma/beta, so checkpoint and model names meet."""
    head, _, last = name.rpartition(".")
    name = f"{head}.{_LEGACY.get(last, last)}" if head else name
    return name[len(prefix) + 1:] if prefix and name.startswith(prefix + ".") else name


def load_weights(model, state: Mapping[str, np.ndarray], source: str = "the checkpoint") -> LoadingInfo:
    """Assign every tensor of `state` to its variable. All names and shapes are checked before any tensor
    is read (a `Tensors` mapping knows them from the file headers), then only the used tensors are read,
    one at a time; a weight holding NaN or infinity is refused, naming it."""
    prefix = model.base_model_prefix
    tied = {_canonical(k, prefix) for k in model.tied_weights}
    variables = hub_variables(model)
    ckpt = {}
    for k in state:
        name = _canonical(k, prefix)
        if k.endswith(_IGNORED) or name in tied:
            continue
        if name in ckpt:  # stored with and without the `{prefix}.` prefix: keep the model's own name
            keep, drop = (k, ckpt[name]) if k in variables else (ckpt[name], k)
            logger.warning("%s holds %s and %s for the same weight; using %s, ignoring %s",
                           source, keep, drop, keep, drop)
            ckpt[name] = keep
        else:
            ckpt[name] = k
    plan, missing = [], []
    for name, var in variables.items():
        key = ckpt.pop(_canonical(name, prefix), None)
        if key is None:
            missing.append(name)
            continue
        shape = state.shapes[key] if isinstance(state, Tensors) else tuple(np.shape(state[key]))
        if shape != hub_shape(var):
            raise CheckpointError(
                f"shape mismatch for {key} in {source}: checkpoint has {shape}, model expects {hub_shape(var)}"
            )
        plan.append((var, key))
    if isinstance(state, Tensors) and any(state.dtypes[key] == "F64" for _, key in plan):
        logger.warning("%s stores float64 weights: they are rounded to the model's float32", source)
    for var, key in plan:
        value = np.asarray(state[key]).astype(np.float32, copy=False)  # bfloat16/float16 exactly, float64 rounded
        if not np.isfinite(value).all():
            nan, inf = int(np.isnan(value).sum()), int(np.isinf(value).sum())
            raise CheckpointError(f"tensor {key} in {source} holds {nan} NaN and {inf} infinite values: "
                                  "the model would give NaN scores")
        assign_hub_value(var, value)
    info = LoadingInfo(missing_keys=missing, unexpected_keys=sorted(ckpt.values()))
    cls = type(model).__name__
    if info.unexpected_keys:
        logger.warning(
            "Some weights of the model checkpoint at %s were not used when initializing %s: %s\n"
            "- This IS expected if you are initializing %s from the checkpoint of a model trained on another "
            "task or with another architecture.", source, cls, info.unexpected_keys, cls)
    if info.missing_keys:
        logger.warning(
            "Some weights of %s were not initialized from the model checkpoint at %s and are newly initialized: "
            "%s\nYou should probably TRAIN this model on a down-stream task to be able to use it for predictions "
            "and inference.", cls, source, info.missing_keys)
    return info


def save(model, save_directory) -> None:
    """`config.json` (with `architectures`) and `model.safetensors` under Hub names."""
    from safetensors.numpy import save_file

    os.makedirs(save_directory, exist_ok=True)
    config = model.config
    config.extra["architectures"] = [type(model).__name__.removeprefix("TF")]
    config.save_pretrained(save_directory)
    tensors = {name: hub_value(var) for name, var in hub_variables(model).items()}
    # transformers refuses safetensors files without a "format" entry in the metadata.
    path = os.path.join(save_directory, SAFE_WEIGHTS)
    save_file(tensors, path, metadata={"format": "pt"})
    umask = os.umask(0)  # safetensors writes 0600: give the file the mode open() gives any new file
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
