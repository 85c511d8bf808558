"""The compiled engine: the Keras model's inference forward lowered to a LiteRT flatbuffer and run by
LiteRT's interpreter (XNNPACK kernels), behind the interface of `compiled.CompiledForward`.

- Conversion: Keras's `ExportArchive` writes the forward (the outputs a pipeline reads, open [B, T]
  shapes) as a SavedModel, and TensorFlow's converter lowers it to built-in ops; `dtype="int8"` adds
  dynamic-range quantisation (int8 weights, float activations). One flatbuffer serves every shape, so a
  model converts once per dtype. It is cached under minibert's cache folder (`litert/<key>/`), keyed by
  what it is made of (the weights, the config, the model class, the dtype, the engine and TensorFlow
  versions), and checked against its manifest (size, sha256, engine version, the key it was written
  under) before use: a damaged or stale entry, or another model's, is rebuilt, never run. So is an entry
  another local user could have written (a link, their files, files group or others can write); a cache
  folder they could write is not used at all (a private temp folder is).
- Running: an interpreter re-plans when its input shape changes, and is not thread-safe, so each thread
  keeps its own few interpreters, each prepared for one shape. Small inputs are padded up to buckets
  (as the XLA path does), so interactive use re-plans rarely; larger inputs run at their own shape.
- The Keras model stays the source: hidden states, attention maps, gradients and symbolic calls run on
  it, and so does everything when LiteRT is not installed or a conversion fails (one warning says why).

This module imports no TensorFlow until a model must be converted: `runtime.py` runs a cached flatbuffer
with numpy and LiteRT alone.
"""
from __future__ import annotations

import collections
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import warnings

import numpy as np

ENV = "MINIBERT_ENGINE"
ENGINES = ("keras", "litert")
DTYPES = ("float32", "int8")  # what the engine converts; bfloat16 models stay on Keras
VERSION = "1"  # bump when what is written changes: older entries then read as stale
MODEL_FILE, INFO_FILE = "model.tflite", "engine.json"
KEY_CHARS = 32  # an entry's folder name: this many hex digits of `content_key`
SIGNATURE = "serve"

# Small inputs are padded up to these shapes, so that one-text calls reuse a prepared interpreter.
BATCHES = (1, 2, 4)
SEQS = (16, 32, 48, 64, 96, 128)
PREPARED_PER_THREAD = 2  # interpreters each thread keeps; each holds its own packed copy of the weights

_warned: set[str] = set()


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, stacklevel=3)


# -- choosing ----------------------------------------------------------------------------------------
def engine_name(engine=None) -> str:
    """'keras' or 'litert': the argument, else MINIBERT_ENGINE, else the CPU's default (`cpu.default_engine`)."""
    if engine is not None:
        name = str(engine).strip().lower()
        if name not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        return name
    env = os.environ.get(ENV, "").strip().lower()
    if env:
        if env in ENGINES:
            return env
        warn_once(f"minibert: {ENV}={os.environ[ENV]!r} is not an engine ({', '.join(ENGINES)}); using the default")
    from . import cpu

    return cpu.default_engine()


def unavailable() -> str | None:
    """Why LiteRT cannot run here (None when it can)."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    except ImportError as e:
        return (f"ai-edge-litert is not installed ({e}); it publishes wheels for Linux x86-64/aarch64, "
                "macOS arm64 and Windows x86-64")
    return None


# -- running -----------------------------------------------------------------------------------------
class LiteRTForward:
    """A cached flatbuffer run by LiteRT: called as `CompiledForward` is, (B, T) int32 arrays -> output object.

    `wrap` turns each numpy output into what the caller expects (TensorFlow tensors for a Keras model,
    numpy arrays for `runtime.py`).
    """

    def __init__(self, folder: str, info: dict, max_len: int, pad_id: int, out_cls, wrap=None):
        from ai_edge_litert.interpreter import Interpreter

        self.folder, self.info = folder, info
        self.path = os.path.join(folder, MODEL_FILE)
        self.max_len, self.pad_id, self.out_cls = max_len, pad_id, out_cls
        self.wrap = wrap or (lambda a: a)
        self.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        self._local = threading.local()
        self._interpreter_cls = Interpreter
        self.shapes: set[tuple[int, int]] = set()  # the shapes interpreters were prepared for
        self._prepare((1, min(SEQS[0], max_len)))  # a flatbuffer that does not load fails here, not mid-pipeline

    def bucket(self, B: int, T: int):
        b = next((x for x in BATCHES if x >= B), None)
        t = next((x for x in SEQS if x >= T), None)
        if b is None or t is None:
            return B, T
        return b, min(t, self.max_len)  # never past the position table

    def _prepare(self, shape):
        """This thread's interpreter for `shape`: kept, or the least recently used one re-planned, or a new one."""
        cache = self._local.__dict__.setdefault("interpreters", collections.OrderedDict())
        if shape in cache:
            cache.move_to_end(shape)
            return cache[shape]
        from ._tensorflow import _fd2_filtered

        with _fd2_filtered():  # LiteRT announces its XNNPACK delegate on stderr when it applies it
            if len(cache) >= PREPARED_PER_THREAD:
                _, entry = cache.popitem(last=False)  # re-plan it: no second copy of the weights
            else:
                it = self._interpreter_cls(model_path=self.path, num_threads=self.threads)
                runner = it.get_signature_runner(SIGNATURE)
                inputs = {k: d["index"] for k, d in runner.get_input_details().items()}
                outputs = {k: d["index"] for k, d in runner.get_output_details().items()}
                del runner  # it holds views of the interpreter's buffers, which block a resize
                entry = (it, inputs, outputs)
            it, inputs, _ = entry
            for index in inputs.values():
                it.resize_tensor_input(index, list(shape), strict=False)
            it.allocate_tensors()
        cache[shape] = entry
        self.shapes.add(shape)
        return entry

    def __call__(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray):
        B, T = ids.shape
        shape = self.bucket(B, T)
        if shape != (B, T) and not paddable(mask):
            shape = (B, T)
        if shape != (B, T):
            pad = ((0, shape[0] - B), (0, shape[1] - T))  # pad ids with mask 0: masked keys, discarded rows
            ids = np.pad(ids, pad, constant_values=self.pad_id)
            mask, types = np.pad(mask, pad), np.pad(types, pad)
        it, inputs, outputs = self._prepare(shape)
        given = {"ids": ids, "mask": mask, "types": types}
        for name, index in inputs.items():  # the converter drops inputs a model ignores (DistilBERT's types)
            it.set_tensor(index, np.ascontiguousarray(given[name], dtype=np.int32))
        it.invoke()
        result = {}
        for name in self.info["outputs"]:
            value = it.get_tensor(outputs[name])  # a copy: the interpreter's buffers are reused
            if shape != (B, T):
                per_token = value.ndim == 3 or name in self.out_cls.per_token_2d
                value = value[:B, :T] if per_token else value[:B]  # (B', T', C) -> (B, T, C); (B', C) -> (B, C)
            result[name] = self.wrap(value)
        return self.out_cls(**result)


def paddable(mask: np.ndarray) -> bool:
    """Whether a (B, T) batch gives the same results padded up to a bucket shape (here and in `compiled.py`).

    A row with no real token attends uniformly to all its keys (as in transformers), and so does a padding
    query with no key in reach on a row padded on the left (ModernBERT's windows), which a head that reads
    position 0 sees: padding would add keys to those averages. Such batches run at their own shape."""
    return bool(mask.max(axis=1).min() > 0 and mask[:, 0].min() > 0)


def output_class(info: dict, import_family: bool = True):
    """The output class `info` names (`module:name`). Without `import_family`, a class defined in a family's
    module (which imports TensorFlow) is stood in for by a ModelOutput with the same fields."""
    import dataclasses
    import importlib

    from . import outputs

    module, _, name = str(info["output_class"]).partition(":")
    if not module.startswith("minibert.") or not name.isidentifier():
        raise ValueError(f"{INFO_FILE} names {info['output_class']!r}, not a minibert output class")
    if not import_family and module != outputs.__name__:
        fields = [(field, object, None) for field in info["outputs"]]
        cls = dataclasses.make_dataclass(name, fields, bases=(outputs.ModelOutput,), repr=False, eq=False)
        cls.per_token_2d = tuple(info.get("per_token_2d", ()))
        return cls
    cls = getattr(importlib.import_module(module), name, None)
    if not isinstance(cls, type) or not issubclass(cls, outputs.ModelOutput):
        raise ValueError(f"{INFO_FILE} names {info['output_class']!r}, not a minibert output class")
    return cls


def forward_for(model):
    """The LiteRT forward of a Keras model (converted now or read from the cache), or None, with one warning
    saying why, where it cannot run (the caller then runs the Keras path)."""
    why = unavailable()
    if why is None and model.dtype_name not in DTYPES:
        why = f"dtype={model.dtype_name!r} is not one it converts ({', '.join(DTYPES)})"
    if why is not None:
        warn_once(f"minibert: the litert engine cannot run here: {why}; the model runs on Keras")
        return None
    import tensorflow as tf

    from . import weight_changes

    weight_changes.watch(model)  # before the key: an assignment from now on is counted
    try:
        folder, info = cached(model)
        make = lambda: LiteRTForward(folder, info, model.config.max_sequence_length, model.config.pad_token_id or 0,
                                     output_class(info), wrap=tf.convert_to_tensor)
        try:
            forward = make()
        except (ValueError, RuntimeError) as e:  # the manifest matched but LiteRT refuses the file: rebuild once
            warn_once(f"minibert: LiteRT could not load {folder} ({first_line(e)}); rebuilding it")
            _set_aside(folder)
            folder, info = cached(model)
            forward = make()
        forward.stamp = weight_changes.Stamp(model, os.path.basename(folder), lambda m: content_key(m)[:32])
        return forward
    except Exception as e:  # a converter failure is raised as many types; the Keras path always works
        warn_once(f"minibert: the litert engine could not convert {type(model).__name__} "
                  f"({type(e).__name__}: {first_line(e)}); the model runs on Keras")
        return None


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else "")[:300]


# -- the cache ---------------------------------------------------------------------------------------
def cache_root() -> str:
    from .default_model import cache_root as minibert_cache

    return os.path.join(minibert_cache(), "litert")


def content_key(model) -> str:
    """A hash of everything the flatbuffer is made of: the same weights and config give the same entry."""
    import tensorflow as tf

    h = hashlib.sha256()
    meta = {"engine": VERSION, "tensorflow": tf.__version__, "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "config": model.config.to_dict(), "dtype": model.dtype_name}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for v in sorted(model.weights, key=lambda v: v.path):
        a = np.ascontiguousarray(v.numpy())
        h.update(f"{v.path}:{a.dtype}:{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def cached(model) -> tuple[str, dict]:
    """(folder, info) of the model's flatbuffer, converted first when the cache has no intact entry."""
    key = content_key(model)[:KEY_CHARS]
    try:
        return _built(cache_root(), key, model)
    except OSError as e:
        # A read-only cache (home or file system): build in a private temp folder instead, as the default model does.
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        from .default_model import _private_temp_root

        return _built(os.path.join(_private_temp_root(), "litert"), key, model)


def is_key(name) -> bool:
    """Whether `name` is an entry's folder name: a bare name, no path."""
    return isinstance(name, str) and re.fullmatch(f"[0-9a-f]{{{KEY_CHARS}}}", name) is not None


def read_entry(folder: str) -> dict | None:
    """The entry's info when its files are as the manifest recorded them, written under this folder's key by this
    engine version, and only this user could have written them; else None."""
    from .default_model import MANIFEST, _intact, _not_private

    files = [os.path.join(folder, name) for name in (MODEL_FILE, INFO_FILE, MANIFEST)]
    try:
        # lstat: a linked folder or file could be anything; a file another user could write, theirs
        if not stat.S_ISDIR(os.lstat(folder).st_mode) or any(_not_private(p) for p in [folder, *files]) \
                or not all(stat.S_ISREG(os.lstat(p).st_mode) for p in files):
            return None
    except OSError:
        return None
    if not _intact(folder, required=(MODEL_FILE, INFO_FILE)):
        return None
    try:
        with open(os.path.join(folder, INFO_FILE), encoding="utf-8") as f:
            info = json.load(f)
        with open(os.path.join(folder, MODEL_FILE), "rb") as f:
            ident = f.read(8)[4:]
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("engine") != VERSION or ident != b"TFL3":
        return None
    if info.get("key") != os.path.basename(os.path.normpath(folder)):  # another model's entry copied here
        return None
    return info


def _built(root: str, key: str, model) -> tuple[str, dict]:
    from .default_model import _not_private, _remove_stale

    folder = os.path.join(root, key)
    os.makedirs(root, mode=0o755, exist_ok=True)  # not group-writable whatever the umask: that is refused below
    why = _not_private(root, follow_symlinks=True)
    if why:  # another user could have put any model there: `cached` builds in a private temp folder instead
        warn_once(f"minibert: the LiteRT cache {root} {why}: another user could put a model there; not using it")
        raise PermissionError(errno.EPERM, f"{root} {why}", root)
    _remove_stale(root, keep=key)  # build folders of killed processes
    info = read_entry(folder) if os.path.lexists(folder) else None
    if info is None and os.path.lexists(folder):
        warn_once(f"minibert: the cached LiteRT model {folder} is damaged or stale; rebuilding it")
        _set_aside(folder)
    if info is None:
        import time

        start = time.perf_counter()
        announce(f"minibert: converting {type(model).__name__} ({model.dtype_name}) for the litert engine, once; "
                 f"it is cached in {folder}")
        _convert(model, root, folder)
        announce(f"minibert: converted in {time.perf_counter() - start:.0f} s")
        info = read_entry(folder)
        if info is None:
            raise OSError(f"{folder} was written but does not read back intact")
    return folder, info


def announce(line: str) -> None:
    """A line on stderr when it is a terminal: a conversion takes 15-40 s, which should not look like a hang.
    Elsewhere (a pipe, a server's log) the line goes to the `minibert` logger at INFO."""
    import logging
    import sys

    if getattr(sys.stderr, "isatty", lambda: False)():
        print(line, file=sys.stderr, flush=True)
    else:
        logging.getLogger("minibert").info(line)


def _set_aside(folder: str) -> None:
    """Move an entry out of the way (removed later as a stale build folder): a reader may still be using it."""
    from .default_model import BUILDING_PREFIX

    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):  # a link (only it goes, not what it points at), or a file
            os.unlink(folder)
        else:
            os.replace(folder, tempfile.mkdtemp(dir=os.path.dirname(folder), prefix=BUILDING_PREFIX))
    except FileNotFoundError:  # another process moved it first
        pass


def _convert(model, root: str, folder: str) -> None:
    """Export the forward, convert it, and move the finished entry into place in one rename."""
    import keras
    import tensorflow as tf

    from ._tensorflow import _fd2_filtered
    from .default_model import BUILDING_PREFIX, _write_manifest

    spec = tf.TensorSpec([None, None], tf.int32)
    traced = {}

    def serve(ids, mask, types):
        out = model.call(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=False,
                         output_attentions=False, training=False)
        traced["class"] = f"{type(out).__module__}:{type(out).__qualname__}"  # Python values, read at trace time
        traced["outputs"], traced["per_token_2d"] = list(out), list(type(out).per_token_2d)
        return dict(out)

    tmp = tempfile.mkdtemp(dir=root, prefix=BUILDING_PREFIX)
    try:
        saved = os.path.join(tmp, "saved_model")
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(name=SIGNATURE, fn=serve, input_signature=[spec] * 3)
        with _fd2_filtered():  # the converter's C++ log lines
            archive.write_out(saved, verbose=False)
            converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[SIGNATURE])
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # what LiteRT runs without TensorFlow
            if model.dtype_name == "int8":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no data given: dynamic-range quantisation
            flatbuffer = converter.convert()
        shutil.rmtree(saved)
        with open(os.path.join(tmp, MODEL_FILE), "wb") as f:
            f.write(flatbuffer)
        info = {"engine": VERSION, "tensorflow": tf.__version__, "dtype": model.dtype_name,
                "output_class": traced["class"], "outputs": traced["outputs"], "per_token_2d": traced["per_token_2d"],
                "model": type(model).__name__, "key": os.path.basename(folder)}
        with open(os.path.join(tmp, INFO_FILE), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
        _write_manifest(tmp)
        for entry in os.scandir(tmp):  # a umask of 002 makes them group-writable, which `read_entry` refuses
            os.chmod(entry.path, stat.S_IMODE(entry.stat().st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))
        try:
            os.replace(tmp, folder)  # atomic: a reader never sees a half-written entry
        except OSError:  # another process finished first: theirs is used if intact
            if read_entry(folder) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
