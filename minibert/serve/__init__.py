"""`minibert serve`: an HTTP inference server with dynamic batching (pip install "minibert-tf[serve]").

Start-up, in the order a user would want to hear about problems: the port is bound first (in use:
one line, before any model loads), then the model is resolved, loaded and warmed; only then does the
server answer, so `/health` answers 200 only when requests will run at once. SIGTERM or SIGINT stops
accepting connections, lets every admitted request finish, and exits 0 (a second SIGINT quits at once).

The routes are in `app.py`, the batching in `batcher.py`, the model's side in `model.py`, the settings and
their defaults in `settings.py`; this module holds the keyword entry point `run` (the `minibert serve`
command's flags are in `cli.py`). Starlette and uvicorn are imported only when a server starts.
"""
from __future__ import annotations

import logging
import socket
import sys

from dataclasses import replace

from ..frontend import UsageError, resolve_model
from .settings import DEFAULTS, MAX_WAIT_MS, Settings

__all__ = ["run", "Settings", "DEFAULTS", "limits"]


def run(settings: Settings | None = None, **overrides) -> int:
    """Serve until SIGTERM or SIGINT, as `minibert serve` does: `run(model="folder", port=9000)` or
    `run(Settings(...))`. A setting that cannot work (a port in use, an impossible limit) raises UsageError in
    one line, before any model loads."""
    s = replace(settings or DEFAULTS, **overrides)
    _check(s)
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise UsageError(f"minibert serve needs {e.name}: pip install 'minibert-tf[serve]'") from None
    from ..pipelines import get_task

    task = get_task(s.task) if s.task else None
    _configure_logging(s.log_level)
    if s.ray:
        from .ray_serve import run_on_ray

        task, model, model_id = _resolve(s, task)
        return run_on_ray(replace(s, replicas=s.replicas or 1), task.name, model, model_id, limits(s))
    sock = _listen(s.host, s.port)  # before the model: a port in use is one line at once
    try:
        return _serve(s, task, sock)
    finally:
        sock.close()


def _check(s: Settings) -> None:
    if s.api_key is not None and (not s.api_key.strip() or s.api_key != s.api_key.strip()):
        raise UsageError("--api-key is empty or has surrounding spaces: every request would be refused")
    if not 0 < s.read_timeout <= 3600:
        raise UsageError(f"--read-timeout must be more than 0 and at most 3600 seconds, got {s.read_timeout}")
    if not 0 <= s.max_wait_ms <= MAX_WAIT_MS:  # also refuses inf and nan, which would never flush a batch
        raise UsageError(f"--max-wait-ms must be between 0 and {MAX_WAIT_MS}, got {s.max_wait_ms}")
    if not 0 <= s.port <= 65535 or (s.ray and s.port == 0):
        raise UsageError(f"--port must be between {1 if s.ray else 0} and 65535, got {s.port}")
    if not s.ray and (s.replicas is not None or s.address is not None):
        raise UsageError("--replicas and --address go with --ray")


def _listen(host: str, port: int) -> socket.socket:
    """Bind before loading anything, so a port in use is one line at once; connections made while the
    model loads wait in the backlog."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def _resolve(s: Settings, task):
    """(the task, the checkpoint folder resolved: not found is one line before TensorFlow loads, the model's
    name for /info)."""
    import os
    from types import SimpleNamespace

    from ..pipelines import get_task
    from .model import detect_task

    given = s.model
    if given is None:
        task = task or get_task("text-classification")
        if task.default_model is None:
            raise UsageError(f"{task.name} has no offline default model: pass --model, for example {task.example_model}")
        given = task.default_model()
    found = SimpleNamespace(model=given)
    resolve_model(found)
    task = task or get_task(detect_task(found.model))
    model_id = os.path.basename(os.path.abspath(given)) if os.path.isdir(given) else given
    return task, found.model, model_id


def limits(s: Settings):
    """The HTTP layer's limits from the settings."""
    from .app import Limits

    return Limits(s.max_batch_tokens, s.max_batch_requests, s.max_wait_ms, s.max_concurrent_requests,
                  s.max_client_batch_size, s.auto_truncate, s.payload_limit, s.api_key, s.batching)


def _serve(s: Settings, task, sock) -> int:
    from .._tensorflow import load_tensorflow_quietly
    from ..pipelines import pipeline
    from .model import Served

    task, model, model_id = _resolve(s, task)
    load_tensorflow_quietly()
    pipe = pipeline(task.name, model=model, batch_size=s.batch_size, max_length=s.max_length, engine=s.engine)
    served = Served(pipe, task.name, model_id, model, s.served_model_name)

    import uvicorn

    from .app import Server
    from .connections import SHUTDOWN_DEADLINE_S, connection_cap, protocol_class

    server = Server(served, limits(s))
    if s.warm_up:  # on the model thread, which keeps what it compiles (LiteRT: one interpreter a thread)
        logging.getLogger("minibert.serve").info("warming up: compiling the model's input shapes")
        server.batcher.executor.submit(served.warm_up).result()
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(server.app(), log_config=None, access_log=False, lifespan="on", loop="asyncio",
                            http=protocol_class(connection_cap(), s.read_timeout),
                            timeout_graceful_shutdown=SHUTDOWN_DEADLINE_S,
                            log_level="warning" if s.log_level != "debug" else "debug")
    ready = f"minibert serve: {task.name} model {served.model_id} on http://{host}:{port}"
    _graceful_server_class()(config, ready).run(sockets=[sock])
    return 0


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("minibert.serve")
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


def _graceful_server_class():
    """Defined on first use: uvicorn is an optional dependency."""
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn's server, which re-raises a caught SIGTERM/SIGINT after its graceful shutdown (so the
        process would die of the signal); here the shutdown is the answer to the signal, and the exit is 0."""

        def __init__(self, config, ready: str):
            super().__init__(config)
            self.ready = ready

        async def startup(self, sockets=None):
            import asyncio

            from .connections import loop_exception_handler

            asyncio.get_running_loop().set_exception_handler(loop_exception_handler)
            await super().startup(sockets)
            if self.started:
                print(self.ready, file=sys.stderr, flush=True)

        def capture_signals(self):
            import contextlib

            @contextlib.contextmanager
            def captured():
                with uvicorn.Server.capture_signals(self):
                    yield
                    self._captured_signals.clear()

            return captured()

    return GracefulServer
