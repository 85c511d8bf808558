"""`minibert serve`: an HTTP inference server with dynamic batching (pip install "minibert-tf[serve]").

Start-up, in the order a user would want to hear about problems: the port is bound first (in use:
one line, before any model loads), then the model is resolved, loaded and warmed; only then does the
server answer, so `/health` answers 200 only when requests will run at once. SIGTERM or SIGINT stops
accepting connections, lets every admitted request finish, and exits 0 (a second SIGINT quits at once).

The routes are in `app.py`, the batching in `batcher.py`, the model's side in `model.py`; this
module holds the command line. Starlette and uvicorn are imported only when a server starts.
"""
from __future__ import annotations

import logging
import socket
import sys

from ..pipelines.base import count


def add_arguments(p) -> None:
    p.add_argument("--model", "-m", metavar="MODEL", help="checkpoint folder or Hub id (default: the task's default model)")
    p.add_argument("--task", help="the task to serve (default: from the checkpoint's head; a bare encoder serves "
                                  "feature-extraction)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one, printed at start)")
    p.add_argument("--served-model-name", metavar="NAME",
                   help="the model's name in /info and /v1/embeddings answers (default: the model id or folder name)")
    p.add_argument("--api-key", metavar="KEY", help="require `Authorization: Bearer KEY` on every route but GET /, /health, /ping and /metrics (as TEI)")
    p.add_argument("--max-length", type=count, metavar="N", help="the longest input in tokens (default: the model's)")
    from ..cli import add_engine_argument

    add_engine_argument(p)
    g = p.add_argument_group("batching and limits")
    g.add_argument("--max-batch-tokens", type=count, default=16384, metavar="N", help="tokens per model call (default 16384)")
    g.add_argument("--max-batch-requests", type=count, default=64, metavar="N",
                   help="inputs per model call (default 64)")
    g.add_argument("--batch-size", type=count, default=16, metavar="N",
                   help="most texts per forward inside a model call, after sorting by length (default 16)")
    g.add_argument("--max-wait-ms", type=float, default=2.0, metavar="MS",
                   help="how long a request waits for others to batch with when the model is idle (default 2)")
    g.add_argument("--max-concurrent-requests", type=count, default=512, metavar="N",
                   help="requests in the server at once; more get 429 at once (default 512)")
    g.add_argument("--max-client-batch-size", type=count, default=32, metavar="N",
                   help="inputs in one request; more get 413 (default 32)")
    g.add_argument("--payload-limit", type=count, default=2_000_000, metavar="BYTES",
                   help="the largest request body (default 2000000)")
    g.add_argument("--read-timeout", type=float, default=READ_DEADLINE_S, metavar="S",
                   help=f"seconds a connection has to send a whole request (headers and body) once it opens or its "
                        f"previous answer is sent; then it is closed (default {READ_DEADLINE_S:g})")
    g.add_argument("--auto-truncate", action="store_true",
                   help="truncate inputs past the model's length instead of refusing them (413)")
    g.add_argument("--no-batching", action="store_true", help="one request per model call (for comparison)")
    r = p.add_argument_group("more than one machine: Ray Serve (pip install 'ray[serve]')")
    r.add_argument("--ray", action="store_true", help="serve the same app on Ray Serve, one model and batcher per replica")
    r.add_argument("--replicas", type=count, metavar="N", help="with --ray: copies of the model (default 1)")
    r.add_argument("--threads", type=count, default=1, metavar="N",
                   help="with --ray: CPUs (TensorFlow threads) per replica (default 1)")
    r.add_argument("--address", metavar="HEAD:6379", help="with --ray: join this Ray cluster (default: start a local one)")
    p.add_argument("--no-warm-up", action="store_true",
                   help="answer at once and compile each input shape on its first use (for development)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="info: one line per request (default)")


MAX_WAIT_MS = 10_000  # a batch waits at most this long for more requests
READ_DEADLINE_S = 30.0  # to send one whole request: a 2 MB body at 70 kB/s


def run(args) -> int:
    from ..cli import CLIError

    if args.api_key is not None and (not args.api_key.strip() or args.api_key != args.api_key.strip()):
        raise CLIError("--api-key is empty or has surrounding spaces: every request would be refused")
    if not 0 < args.read_timeout <= 3600:
        raise CLIError(f"--read-timeout must be more than 0 and at most 3600 seconds, got {args.read_timeout}")
    if not 0 <= args.max_wait_ms <= MAX_WAIT_MS:  # also refuses inf and nan, which would never flush a batch
        raise CLIError(f"--max-wait-ms must be between 0 and {MAX_WAIT_MS}, got {args.max_wait_ms}")
    if not 0 <= args.port <= 65535 or (args.ray and args.port == 0):
        raise CLIError(f"--port must be between {1 if args.ray else 0} and 65535, got {args.port}")
    if not args.ray and (args.replicas is not None or args.address is not None):
        raise CLIError("--replicas and --address go with --ray")
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise CLIError(f"minibert serve needs {e.name}: pip install 'minibert-tf[serve]'") from None
    from ..pipelines import get_task

    task = get_task(args.task) if args.task else None
    _configure_logging(args.log_level)
    if args.ray:
        from .ray_serve import run_on_ray

        task, model_id = _resolve(args, task)
        args.replicas = args.replicas or 1
        return run_on_ray(args, task.name, args.model, model_id, _limits(args))
    sock = _listen(args.host, args.port)  # before the model: a port in use is one line at once
    try:
        return _serve(args, task, sock)
    finally:
        sock.close()


def _listen(host: str, port: int) -> socket.socket:
    """Bind before loading anything, so a port in use is one line at once; connections made while the
    model loads wait in the backlog."""
    from ..cli import CLIError

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        raise CLIError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def _resolve(args, task):
    """The checkpoint folder (args.model, resolved: not found is one line, before TensorFlow loads), the
    task it serves and the model's name for /info."""
    import os

    from ..cli import CLIError, resolve_model
    from ..pipelines import get_task
    from .model import detect_task

    if args.model is None:
        task = task or get_task("text-classification")
        if task.default_model is None:
            raise CLIError(f"{task.name} has no offline default model: pass --model, for example {task.example_model}")
        args.model = task.default_model()
    given = args.model
    resolve_model(args)
    task = task or get_task(detect_task(args.model))
    model_id = os.path.basename(os.path.abspath(given)) if os.path.isdir(given) else given
    return task, model_id


def _limits(args):
    from .app import Limits

    return Limits(args.max_batch_tokens, args.max_batch_requests, args.max_wait_ms, args.max_concurrent_requests,
                  args.max_client_batch_size, args.auto_truncate, args.payload_limit, args.api_key,
                  not args.no_batching)


def _serve(args, task, sock) -> int:
    from .._tensorflow import load_tensorflow_quietly
    from ..pipelines import pipeline
    from .model import Served

    task, model_id = _resolve(args, task)
    load_tensorflow_quietly()
    pipe = pipeline(task.name, model=args.model, batch_size=args.batch_size, max_length=args.max_length)
    served = Served(pipe, task.name, model_id, args.model, args.served_model_name)
    if not args.no_warm_up:
        logging.getLogger("minibert.serve").info("warming up: compiling the model's input shapes")
        served.warm_up()

    import uvicorn

    from .app import Server

    app = Server(served, _limits(args)).app()
    host, port = sock.getsockname()[:2]
    from .connections import SHUTDOWN_DEADLINE_S, connection_cap, protocol_class

    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", loop="asyncio",
                            http=protocol_class(connection_cap(), args.read_timeout), timeout_graceful_shutdown=SHUTDOWN_DEADLINE_S,
                            log_level="warning" if args.log_level != "debug" else "debug")
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
