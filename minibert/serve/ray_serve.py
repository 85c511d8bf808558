"""`minibert serve --ray`: the same Starlette app on Ray Serve, one model and one batcher per replica.

Ray Serve's HTTP proxy spreads requests over `--replicas` copies of the app; each replica loads and
warms its own model (with `--threads` TensorFlow threads) and batches the requests it is given, so a
cluster scales out with no other code. Routes and JSON are those of the one-process server; /metrics
and /info answer for the replica that takes the request.
"""
from __future__ import annotations

import logging
import signal
import socket
import sys
import threading


def run_on_ray(s, task_name: str, model: str, model_id: str, limits) -> int:
    """`s`: the server's Settings (`settings.py`)."""
    from ..frontend import UsageError as CLIError

    try:
        import ray
        from ray import serve
    except ImportError as e:
        raise CLIError(f"--ray needs Ray Serve ({e.name}): pip install 'ray[serve]'") from None
    _check_port_free(s.host, s.port)
    started = not ray.is_initialized()
    if started:
        ray.init(address=s.address, logging_level=logging.WARNING, log_to_driver=False,
                 include_dashboard=False)
    options = {"batch_size": s.batch_size, "task": task_name, "model": model, "model_id": model_id, "limits": limits,
               "max_length": s.max_length, "threads": s.threads, "warm_up": s.warm_up, "log_level": s.log_level,
               "engine": s.engine, "served_model_name": s.served_model_name}

    def build():
        return _replica_app(options)

    deployment = serve.deployment(serve.ingress(build)(), name="minibert", num_replicas=s.replicas,
                                  ray_actor_options={"num_cpus": s.threads},
                                  max_ongoing_requests=limits.max_concurrent_requests)
    serve.start(http_options={"host": s.host, "port": s.port})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.run(deployment.bind(), name="minibert", route_prefix="/")
        print(f"minibert serve: {task_name} model {model_id} on http://{s.host}:{s.port} "
              f"(Ray Serve, {s.replicas} replica{'s' if s.replicas > 1 else ''})", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        serve.shutdown()  # lets every replica finish the requests it holds
        if started:
            ray.shutdown()
    return 0


def _replica_app(options: dict):
    """In a replica: load and warm the model, and build the app over it."""
    from ..pipelines import pipeline
    from ..frontend import limit_threads
    from . import _configure_logging
    from .app import Server
    from .model import Served

    _configure_logging(options["log_level"])
    limit_threads(options["threads"])
    limits = options["limits"]
    pipe = pipeline(options["task"], model=options["model"], batch_size=options["batch_size"],
                    max_length=options["max_length"], engine=options["engine"])
    served = Served(pipe, options["task"], options["model_id"], options["model"], options["served_model_name"])
    server = Server(served, limits)
    if options["warm_up"]:  # on the model thread (LiteRT: one interpreter a thread)
        server.batcher.executor.submit(served.warm_up).result()
    return server.app()


def _check_port_free(host: str, port: int) -> None:
    """Ray Serve binds its proxy in another process: check the port here, to fail in one line at once."""
    from ..frontend import UsageError as CLIError

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise CLIError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
