"""What the front ends share, below all of them: the command line, Ray, the server and the
sentence-transformers classes each import this and none imports another.

A user error (`UsageError`) is printed by whichever front end caught it as one line; `resolve_model` finds
--model before TensorFlow loads; `add_engine_argument` is the one --engine flag; `limit_threads` sizes
TensorFlow's thread pools for a worker process (a Ray actor, a Serve replica).
"""
from __future__ import annotations


class UsageError(Exception):
    """A user error: printed as one line, exit status 1."""


def resolve_model(args) -> None:
    """Resolve --model (a folder, or a Hub id in the cache) first: a user should not wait for TensorFlow
    to hear that it cannot be found."""
    if getattr(args, "model", None):
        from .checkpoint import resolve

        args.model = resolve(args.model)


def add_engine_argument(p) -> None:
    from .cpu import default_engine
    from .engine import ENGINES, ENV

    p.add_argument("--engine", choices=ENGINES,
                   help=f"run the model on Keras or on the compiled LiteRT engine (default: ${ENV}, else this CPU's "
                        f"default, {default_engine()})")


def limit_threads(threads: int | None) -> None:
    """Give TensorFlow `threads` threads (default: the CPUs Ray gave this worker). TF's own pools default
    to every core of the machine, so N workers would each start one thread per core and fight over them.
    Must run before TensorFlow's first op (a worker's __init__ is)."""
    if threads is None:
        import ray

        if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
            return  # not in a Ray worker (a driver, a test): TensorFlow's own defaults
        threads = max(1, round(ray.get_runtime_context().get_assigned_resources().get("CPU", 0)))
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TF already ran in this process: its thread pools exist and cannot change
        pass
