"""Which matmul kernels and which compilation minibert uses on this CPU: the rule, in one place.

Two choices decide how fast TensorFlow runs these models on a CPU. The matmul library of the
plain-graph ops, oneDNN or Eigen: TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it is imported,
and by default turns oneDNN on only where the CPU has AVX-512 neural-network features (VNNI, BF16, AMX),
although oneDNN's matmuls were faster on every x86 kind measured. And whether small inputs run under
XLA (fused, one compilation per padded shape; see `compiled.py` for the buckets) or as a plain graph.

A `KernelPlan` names one of each: `onednn+xla`, `eigen+xla`, `onednn+graph`, `eigen+graph` (the
second part says how small inputs run; large ones always run as a plain graph). `RULE` maps the CPU's
vector ISA to a plan and `MINIBERT_KERNELS` overrides it (`MINIBERT_PATH`, its first name, is still read;
`describe()["path"]` keeps the plan's first name too). A `TF_ENABLE_ONEDNN_OPTS` the user set is never
changed, and once TensorFlow is imported its oneDNN state is what it is: the plan reported is then the
one in effect. The measurements behind `RULE` are in docs/benchmarks.md (`scripts/bench.py --paths-only`).
"""
from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass

ENV = "MINIBERT_KERNELS"
OLD_ENV = "MINIBERT_PATH"  # the variable's first name, still read
MATMULS = ("onednn", "eigen")
SMALL = ("xla", "graph")


@dataclass(frozen=True)
class KernelPlan:
    """A choice of kernels, not a file path: the plain graph's matmul library and how small inputs run."""

    matmuls: str  # "onednn" or "eigen": the plain-graph ops' matmul library
    small: str  # "xla" or "graph": how inputs inside the XLA buckets run

    def __str__(self):
        return f"{self.matmuls}+{self.small}"

    @classmethod
    def parse(cls, text: str) -> "KernelPlan":
        matmuls, _, small = text.strip().lower().partition("+")
        if matmuls not in MATMULS or small not in SMALL:
            raise ValueError(f"{text!r} is not a path; paths are " + ", ".join(f"{m}+{s}" for m in MATMULS for s in SMALL))
        return cls(matmuls, small)


# The CPU's vector ISA -> the fastest plan `scripts/bench.py --paths-only` measured on it (docs/benchmarks.md):
# oneDNN's matmuls beat Eigen's on large batches on AMX and on AVX2 CPUs, and XLA saves a few milliseconds at
# one sentence; AVX-512 without AMX, between the two, gets the same plan.
RULE = {
    "amx": KernelPlan("onednn", "xla"),
    "avx512": KernelPlan("onednn", "xla"),
    "avx2": KernelPlan("onednn", "xla"),
    "other": None,  # not x86, or an x86 without AVX2: TensorFlow's own defaults, XLA for small inputs
}


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them in /proc/cpuinfo (empty where there is no such file)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


ISAS = ("other", "avx2", "avx512", "amx")  # narrowest first


def isa(flags: set[str] | None = None) -> str:
    """The widest vector ISA of this CPU that the rule knows: 'amx', 'avx512', 'avx2' or 'other'.

    A cap set with oneDNN's own `ONEDNN_MAX_CPU_ISA` (e.g. `AVX2`) is honoured: the CPU is then taken as that kind.
    """
    flags = cpu_flags() if flags is None else flags
    if {"amx_tile", "amx_bf16", "avx512f"} <= flags:
        kind = "amx"
    elif {"avx512f", "avx512bw", "avx512vl"} <= flags:
        kind = "avx512"
    elif {"avx2", "fma"} <= flags:
        kind = "avx2"
    else:
        kind = "other"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    capped = ("amx" if "AMX" in cap else "avx512" if cap.startswith("AVX512") or cap.startswith("AVX10") else
              "avx2" if cap.startswith("AVX2") else "other" if cap in ("SSE41", "AVX") else None)
    return min(kind, capped, key=ISAS.index) if capped else kind


def tensorflow_onednn_default(flags: set[str] | None = None) -> bool:
    """What TensorFlow does without TF_ENABLE_ONEDNN_OPTS: oneDNN on x86 Linux CPUs with AVX-512 VNNI/BF16 or AMX."""
    flags = cpu_flags() if flags is None else flags
    return sys.platform.startswith("linux") and bool(flags & {"avx512_vnni", "avx512_bf16", "amx_tile"})


def onednn_in_effect() -> bool | None:
    """Whether the imported TensorFlow runs oneDNN kernels (None before TensorFlow is imported)."""
    if "tensorflow" not in sys.modules:
        return None
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # a TensorFlow that does not say
        return _onednn_setting(os.environ.get("TF_ENABLE_ONEDNN_OPTS", ""))


def _onednn_setting(value: str) -> bool:
    """TF_ENABLE_ONEDNN_OPTS as TensorFlow reads it: '1' or 'true' (any case) turns oneDNN on."""
    return value.strip().lower() in ("1", "true")


_chosen: KernelPlan | None = None
_why = ""


def configure() -> KernelPlan:
    """Choose the kernel plan for this process (once) and set what must be set before TensorFlow is imported.

    Called by `import minibert`; only sets `TF_ENABLE_ONEDNN_OPTS` when the user has not, and only while
    TensorFlow is not imported yet. A `TF_ENABLE_ONEDNN_OPTS` the user set decides the matmul library
    (without a word, unless `MINIBERT_KERNELS` asks for the other one).
    """
    global _chosen, _why
    if _chosen is not None:
        return _chosen
    flags = cpu_flags()
    kind = isa(flags)
    wanted, _why = RULE.get(kind), f"the rule for {kind}"
    name = ENV if os.environ.get(ENV) else OLD_ENV  # the messages name the variable the user set
    override = os.environ.get(name)
    if override:
        try:
            wanted, _why = KernelPlan.parse(override), f"{name}={override}"
        except ValueError as e:
            warnings.warn(f"{name}: {e}; using {_why_rule(kind)}", stacklevel=2)
            override = None
    if wanted is None:
        wanted = KernelPlan("onednn" if tensorflow_onednn_default(flags) else "eigen", "xla")
        _why = "TensorFlow's defaults (no rule for this CPU)"
    user_set = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if user_set is not None and not override:  # the user's own choice of matmuls is the plan, silently
        wanted = KernelPlan("onednn" if _onednn_setting(user_set) else "eigen", wanted.small)
        _why += f", with TF_ENABLE_ONEDNN_OPTS={user_set} as set"
    elif user_set is None and "tensorflow" not in sys.modules:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if wanted.matmuls == "onednn" else "0"
    _chosen = wanted
    return wanted


def _why_rule(kind):
    return f"the rule for {kind} ({RULE.get(kind) or 'TensorFlow defaults'})"


def kernel_plan() -> KernelPlan:
    """The kernel plan in effect: the chosen one, with the matmul library TensorFlow actually runs once imported.

    When the chosen matmul library could not be had (TensorFlow imported before minibert, or the user's
    TF_ENABLE_ONEDNN_OPTS says otherwise), one warning names what runs instead.
    """
    global _chosen, _why
    chosen = configure()
    on = onednn_in_effect()
    if on is None:
        return chosen
    actual = KernelPlan("onednn" if on else "eigen", chosen.small)
    if actual != chosen:
        reason = ("TF_ENABLE_ONEDNN_OPTS is set" if "TF_ENABLE_ONEDNN_OPTS" in os.environ and not _we_set_onednn(chosen)
                  else "TensorFlow was imported before minibert")
        warnings.warn(f"minibert: path {chosen} ({_why}) cannot run here ({reason}); running {actual}", stacklevel=2)
        _chosen, _why = actual, f"{_why}, then {reason}"
    return _chosen


def _we_set_onednn(chosen: KernelPlan) -> bool:
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS") == ("1" if chosen.matmuls == "onednn" else "0")


def describe() -> dict:
    """What `scripts/bench.py` and `minibert trace` print: the CPU, TensorFlow's oneDNN state, the plan and why."""
    flags = cpu_flags()
    p = kernel_plan()
    return {"isa": isa(flags), "onednn": onednn_in_effect(), "path": str(p), "why": _why,
            "tensorflow_onednn_default": tensorflow_onednn_default(flags)}


def bfloat16_matmuls() -> str | None:
    """Why bfloat16 matmuls would not be fast here (None when they would): they need oneDNN on a CPU with
    AVX512_BF16 or AMX; elsewhere oneDNN or XLA emulate them, slower than float32."""
    flags = cpu_flags()
    if not flags & {"avx512_bf16", "amx_bf16"}:
        return "this CPU has no bfloat16 instructions (avx512_bf16 or amx_bf16)"
    p = kernel_plan()
    if p.matmuls != "onednn":
        return f"the path is {p} and bfloat16 matmuls need oneDNN"
    return None


# The CPU's vector ISA -> the inference engine used when neither `engine=` nor MINIBERT_ENGINE says
# (`engine.py`): LiteRT only where `scripts/bench.py --engines-only` measures it faster than the Keras path.
# On AVX-512 without AMX (measured on AMD EPYC), LiteRT float32 is faster at one sentence and as fast on
# corpora and big batches, so it is the default there. On AMX it is faster at one sentence but slower on
# corpora and big batches, so Keras stays; AVX2 and the rest keep Keras until they are measured
# (docs/benchmarks.md).
ENGINE_RULE = {"amx": "keras", "avx512": "litert", "avx2": "keras", "other": "keras"}


def default_engine() -> str:
    """'keras' or 'litert': the engine this CPU runs inference on by default."""
    return ENGINE_RULE.get(isa(), "keras")
