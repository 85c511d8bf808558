"""The CPU rule (minibert/cpu.py): which kernel plan ("path") a CPU gets, the override, what the user set is kept,
and parity on every plan (each forced through MINIBERT_PATH in a fresh process: oneDNN is chosen when TensorFlow
is imported)."""
import json
import os
import subprocess
import sys

import pytest

from minibert import cpu
from reference import TESTS

ALL_PATHS = [f"{m}+{s}" for m in cpu.MATMULS for s in cpu.SMALL]
ZEN4 = {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"}
SAPPHIRE_RAPIDS = ZEN4 | {"amx_tile", "amx_bf16", "amx_int8"}
SKYLAKE_SP = {"avx2", "fma", "avx512f", "avx512bw", "avx512vl"}
ZEN3 = {"avx2", "fma", "sse4_2"}


@pytest.mark.parametrize("flags, kind, tf_default", [(SAPPHIRE_RAPIDS, "amx", True), (ZEN4, "avx512", True),
                                                     (SKYLAKE_SP, "avx512", False), (ZEN3, "avx2", False),
                                                     ({"neon", "asimd"}, "other", False), (set(), "other", False)])
def test_cpu_kind_from_flags(monkeypatch, flags, kind, tf_default):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert cpu.isa(flags) == kind
    assert cpu.tensorflow_onednn_default(flags) is tf_default


@pytest.mark.parametrize("cap, kind", [("AVX2", "avx2"), ("avx2_vnni", "avx2"), ("AVX512_CORE", "avx512"),
                                       ("AVX512_CORE_AMX", "amx"), ("SSE41", "other"), ("", "amx")])
def test_onednn_isa_cap_is_honoured(monkeypatch, cap, kind):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert cpu.isa(SAPPHIRE_RAPIDS) == kind
    assert cpu.isa(ZEN3) == ("other" if kind == "other" else "avx2")  # a cap never widens


def test_every_cpu_kind_has_a_rule():
    assert set(cpu.RULE) == set(cpu.ISAS)
    for path in filter(None, cpu.RULE.values()):
        assert cpu.KernelPlan.parse(str(path)) == path


@pytest.mark.parametrize("text", ["onednn", "xla", "onednn+jit", "mkl+xla", ""])
def test_a_path_that_is_not_one_is_named(text):
    with pytest.raises(ValueError, match="is not a path; paths are onednn\\+xla, onednn\\+graph, eigen\\+xla, eigen\\+graph"):
        cpu.KernelPlan.parse(text)


def run(code: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("MINIBERT_KERNELS", "MINIBERT_PATH", "TF_ENABLE_ONEDNN_OPTS")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": TESTS, **env})


DESCRIBE = "import minibert, json\nfrom minibert import cpu\nimport minibert.modeling\nprint(json.dumps(cpu.describe()))"


def described(p):
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_the_rule_sets_onednn_and_reports_it():
    d = described(run(DESCRIBE))
    rule = cpu.RULE[cpu.isa()]
    want = str(rule) if rule else None
    if want:
        assert d["path"] == want and d["why"] == f"the rule for {cpu.isa()}"
        assert d["onednn"] is (rule.matmuls == "onednn")
    else:  # a CPU without a rule keeps TensorFlow's own oneDNN default
        assert d["why"] == "TensorFlow's defaults (no rule for this CPU)"
        assert d["onednn"] is d["tensorflow_onednn_default"]


@pytest.mark.parametrize("path", ALL_PATHS)
def test_the_override_is_taken(path):
    p = run(DESCRIBE, MINIBERT_PATH=path)
    d = described(p)
    assert (d["path"], d["why"]) == (path, f"MINIBERT_PATH={path}")
    assert d["onednn"] is (path.startswith("onednn")) and "Warning" not in p.stderr


def test_a_bad_override_warns_once_and_falls_back_to_the_rule():
    p = run(DESCRIBE, MINIBERT_PATH="fast")
    d = described(p)
    assert p.stderr.count("MINIBERT_PATH") == 1, p.stderr
    assert "'fast' is not a path" in p.stderr and f"using the rule for {cpu.isa()}" in p.stderr
    assert d["why"] == f"the rule for {cpu.isa()}" or d["why"].startswith("TensorFlow's defaults")


def test_the_users_onednn_setting_is_never_changed():
    """TF_ENABLE_ONEDNN_OPTS=0 set by the user against an override asking for oneDNN: the user's setting holds,
    and one warning names the path that runs instead."""
    code = DESCRIBE + "\nimport os; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    p = run(code, MINIBERT_PATH="onednn+xla", TF_ENABLE_ONEDNN_OPTS="0")
    assert p.returncode == 0, p.stderr
    *_, line, setting = p.stdout.strip().splitlines()
    assert setting == "0" and json.loads(line)["path"] == "eigen+xla"
    assert p.stderr.count("cannot run here (TF_ENABLE_ONEDNN_OPTS is set); running eigen+xla") == 1, p.stderr


def test_the_users_onednn_setting_alone_is_taken_without_a_word():
    p = run(DESCRIBE, TF_ENABLE_ONEDNN_OPTS="0")
    d = described(p)
    assert d["path"].startswith("eigen+") and d["onednn"] is False
    assert "TF_ENABLE_ONEDNN_OPTS=0 as set" in d["why"] and "Warning" not in p.stderr, p.stderr


def test_tensorflow_imported_first_is_reported_as_it_runs():
    code = "import os; os.environ['TF_ENABLE_ONEDNN_OPTS'] = '0'\nimport tensorflow\ndel os.environ['TF_ENABLE_ONEDNN_OPTS']\n" + DESCRIBE
    p = run(code, MINIBERT_PATH="onednn+graph")
    assert described(p)["path"] == "eigen+graph"
    assert "TensorFlow was imported before minibert" in p.stderr


PARITY = """
import json, sys
import numpy as np
import minibert
from minibert import cpu
from reference import TOL, max_diffs, reference
folders, shapes = json.loads(sys.argv[1]), json.loads(sys.argv[2])
worst = {}
for family, folder in folders.items():
    model = minibert.AutoModelForSequenceClassification.from_pretrained(folder)
    for B, T in shapes:
        rng = np.random.default_rng(B * 1000 + T)
        lengths = rng.integers(1, T + 1, size=B); lengths[0] = T
        mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
        ids = np.where(mask == 1, rng.integers(5, 120, size=(B, T)), model.config.pad_token_id or 0)
        ref = reference(folder, ids, mask, head="sequence-classification")
        out = model(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        for k, d in max_diffs(out, ref, mask).items():
            worst[f"{family} {B}x{T} {k}"] = float(d)
print(json.dumps({"path": cpu.describe()["path"], "diffs": worst}))
"""
SHAPES = [(1, 7), (3, 40), (4, 32), (6, 9), (2, 130), (1, 512)]  # in XLA buckets, past them, batch 1, 512 tokens


@pytest.fixture(scope="module")
def long_checkpoints(tmp_path_factory):
    from reference import make_checkpoint

    small = dict(num_attention_heads=4, intermediate_size=37, num_hidden_layers=2, vocab_size=120)
    root = tmp_path_factory.mktemp("paths")
    return {"bert": make_checkpoint(root / "bert", "bert", "sequence-classification", hidden_size=32,
                                    max_position_embeddings=512, **small),
            "distilbert": make_checkpoint(root / "distilbert", "distilbert", "sequence-classification", dim=32, n_heads=4,
                                          hidden_dim=37, n_layers=2, vocab_size=120, max_position_embeddings=512),
            "roberta": make_checkpoint(root / "roberta", "roberta", "sequence-classification", hidden_size=32,
                                       max_position_embeddings=514, pad_token_id=1, **small)}


@pytest.mark.slow
@pytest.mark.parametrize("path", ALL_PATHS)
def test_parity_on_every_path(long_checkpoints, path):
    """Logits within 1e-5 and hidden states / attention maps within 1e-4 of transformers, padded batches, on each path."""
    from reference import TOL

    p = subprocess.run([sys.executable, "-c", PARITY, json.dumps(long_checkpoints), json.dumps(SHAPES)],
                       capture_output=True, text=True, timeout=600,
                       env={**{k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"},
                            "MINIBERT_PATH": path, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": TESTS})
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["path"] == path
    assert len(result["diffs"]) >= 3 * len(SHAPES) * 3
    bad = {k: d for k, d in result["diffs"].items() if not d <= TOL[k.rsplit(" ", 1)[1]]}
    assert not bad, bad


def test_the_kernels_variable_wins_over_its_first_name():
    p = run(DESCRIBE, MINIBERT_KERNELS="eigen+graph", MINIBERT_PATH="onednn+xla")
    d = described(p)
    assert (d["path"], d["why"]) == ("eigen+graph", "MINIBERT_KERNELS=eigen+graph")
