"""The HTTP routes: text-embeddings-inference's (TEI's) request and response JSON for what minibert has,
OpenAI's `/v1/embeddings`, and one route per other task.

- `/embed` {inputs, normalize, truncate, prompt_name, dimensions} -> [[float]]  (feature extraction)
- `/predict` {inputs: text | [text, pair] | [[text], [text, pair], ...], raw_scores, truncate}
  -> [{label, score}] for one input, [[...]] for a batch: every label, best first (text classification)
- `/rerank` {query, texts, raw_scores, return_text, truncate} -> [{index, score[, text]}], best first
  (a one-label pair classifier: a cross-encoder)
- `/v1/embeddings` {input, model, encoding_format, dimensions} -> OpenAI's list object, with usage
- `/ner`, `/qa`, `/fill-mask`, `/zero-shot` {inputs, parameters} -> the task's record per input
  (`Task.record`), parameters as the pipeline's call options
- `/tokenize`, `/health`, `/info`, `/metrics` (Prometheus text)
Errors are TEI's `{"error", "error_type"}` with its statuses: 413 for a request over a limit
(Validation), 422 for a body or argument the route cannot read, 400 for empty inputs, 429 when
overloaded, 401 without the API key, 404/405 for an unknown route or method.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging

import time
from dataclasses import dataclass

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from .batcher import Batcher, Overloaded
from .metrics import Metrics
from .model import ServeError as APIError, Served
from .settings import DEFAULTS

log = logging.getLogger("minibert.serve")

INLINE_CHARS = 8192  # requests up to this many characters are tokenized on the event loop
DRAIN_BYTES = 16_000_000  # of a body over the payload limit, read and dropped so the client reads the 413
DRAIN_IDLE_S = 1.0  # ... while it keeps coming
TOKENIZING_AT_ONCE = 2  # larger ones: a thread each, this many at a time


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


@dataclass
class Limits:
    """What the HTTP layer enforces, with the server's defaults (`settings.py`)."""
    max_batch_tokens: int = DEFAULTS.max_batch_tokens
    max_batch_requests: int = DEFAULTS.max_batch_requests  # inputs per model call
    max_wait_ms: float = DEFAULTS.max_wait_ms
    max_concurrent_requests: int = DEFAULTS.max_concurrent_requests
    max_client_batch_size: int = DEFAULTS.max_client_batch_size
    auto_truncate: bool = DEFAULTS.auto_truncate
    payload_limit: int = DEFAULTS.payload_limit
    api_key: str | None = DEFAULTS.api_key
    batching: bool = DEFAULTS.batching


@dataclass
class Ctx:
    """What a request's log line, metrics and TEI's timing headers report, filled in as the route learns it."""
    inputs: int = 0
    tokens: int = 0
    characters: int = 0
    tokenization_s: float = 0.0
    queue_s: float = 0.0
    inference_s: float = 0.0

    def headers(self, total_s: float) -> dict:
        ms = lambda s: str(int(s * 1000))  # noqa: E731 - TEI's headers are whole milliseconds
        return {"x-compute-type": "cpu", "x-compute-time": ms(total_s), "x-compute-characters": str(self.characters),
                "x-compute-tokens": str(self.tokens), "x-total-time": ms(total_s),
                "x-tokenization-time": ms(self.tokenization_s), "x-queue-time": ms(self.queue_s),
                "x-inference-time": ms(self.inference_s)}


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def json_response(payload, status: int = 200) -> Response:
    try:
        body = json.dumps(payload, default=_json_default, ensure_ascii=False, allow_nan=False)
    except ValueError:  # NaN or infinity: JSON has none, and a client cannot read it
        raise APIError("the model produced NaN or infinite numbers: are its weights broken?", "Backend") from None
    return Response(body, status, media_type="application/json")


def error_response(message: str, error_type: str, status: int, openai: bool = False) -> Response:
    """TEI's {"error", "error_type"}, or OpenAI's {"error": {"message", "type", "code"}} on its routes."""
    body = {"error": {"message": message, "type": error_type, "code": status}} if openai else \
        {"error": message, "error_type": error_type}
    return Response(json.dumps(body), status, media_type="application/json")


# -- reading a request ----------------------------------------------------------------------------
def check_json_content_type(request: Request) -> None:
    """A body must say it is JSON, as TEI requires: a web page can send text/plain or a form to any address
    without asking first (no CORS preflight), so accepting those would let any site use this server."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and not (kind.startswith("application/") and kind.endswith("+json")):
        raise APIError(f"the request's Content-Type is {kind or 'missing'}: send `Content-Type: application/json`",
                       "UnsupportedMediaType")


class BodyBudget:
    """The bytes of request bodies being read, all requests together: bounded by bytes held, not by requests,
    so clients trickling their bodies hold a few bytes each, and only fast large bodies can fill it."""

    def __init__(self, limit: int):
        self.limit, self.held = limit, 0

    def take(self, n: int) -> None:
        if self.held + n > self.limit:
            raise APIError(f"the server is reading {self.held} bytes of request bodies already, its bound "
                           "(--max-concurrent-requests times --payload-limit): retry later", "Overloaded")
        self.held += n

    def give(self, n: int) -> None:
        self.held -= n


async def read_json(request: Request, limit: int, budget: BodyBudget | None = None):
    """The body as JSON, read no further than `limit` bytes (once: the endpoint reads it before admission)."""
    if "json" in request.scope.get("minibert", {}):
        return request.scope["minibert"]["json"]
    body = await _read_json(request, limit, budget or BodyBudget(limit))
    request.scope.setdefault("minibert", {})["json"] = body
    return body


async def _read_json(request: Request, limit: int, budget: BodyBudget):
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        await _drain(request)
        raise APIError(f"the request body is {int(length)} bytes, more than the {limit} this server takes "
                       "(--payload-limit)", "Validation", 413)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                await _drain(request)
                raise APIError(f"the request body is more than the {limit} bytes this server takes "
                               "(--payload-limit)", "Validation", 413)
            budget.take(len(chunk))
            chunks.append(chunk)
        raw = b"".join(chunks)
    finally:
        budget.give(sum(map(len, chunks)))
    if not raw:
        raise APIError("the request has no body: send a JSON object")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(f"the body is not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise APIError(f"the body is not valid JSON: {e}") from None
    except RecursionError:
        raise APIError("the body's JSON is nested too deeply") from None
    if not isinstance(body, dict):
        raise APIError(f"the body must be a JSON object, got {type(body).__name__}")
    return body


async def _drain(request: Request) -> None:
    """Read and drop a bounded part of an oversized body, as nginx's lingering close does: a client still
    sending when the 413 comes would otherwise see its connection reset, not the answer."""
    got = 0
    while got < DRAIN_BYTES:
        try:
            message = await asyncio.wait_for(request.receive(), DRAIN_IDLE_S)
        except asyncio.TimeoutError:
            return
        if message["type"] != "http.request":
            return
        got += len(message.get("body", b""))
        if not message.get("more_body"):
            return


class Fields:
    """A request's JSON object, read field by field with TEI's defaults. Unknown fields are ignored, as TEI
    ignores them (logged at debug); options some clients nest under `parameters` (huggingface_hub's
    `feature_extraction` and `text_classification`, langchain) are read from there when not at the top."""

    def __init__(self, body: dict, known: tuple[str, ...]):
        nested = body.get("parameters")
        if isinstance(nested, dict) and "parameters" not in known:
            body = {**{k: v for k, v in nested.items() if k in known}, **body}
        unknown = sorted(set(body) - set(known) - {"parameters"})
        if unknown:
            log.debug("ignored unknown field(s) %s", ", ".join(unknown)[:200])
        self.body = body

    def bool(self, name: str, default: bool) -> bool:
        value = self.body.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise APIError(f"`{name}` must be true or false, got {json.dumps(value)[:80]}")
        return value

    def str(self, name: str, default=None, required=False):
        value = self.body.get(name)
        if value is None:
            if required:
                raise APIError(f"`{name}` is missing")
            return default
        if not isinstance(value, str):
            raise APIError(f"`{name}` must be a string, got {type(value).__name__}")
        return value

    def int(self, name: str, minimum: int = 1):
        value = self.body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise APIError(f"`{name}` must be an integer of at least {minimum}, got {json.dumps(value)[:80]}")
        return value

    def texts(self, name: str, max_count: int) -> tuple[list[str], bool]:
        """A string or a list of strings: (the list, whether one string was sent)."""
        value = self.body.get(name)
        if value is None:
            raise APIError(f"`{name}` is missing: send a string or a list of strings")
        single = isinstance(value, str)
        items = [value] if single else value
        if not isinstance(items, list):
            raise APIError(f"`{name}` must be a string or a list of strings, got {type(value).__name__}")
        if not items:
            raise APIError(f"`{name}` cannot be empty", "Empty")
        check_count(len(items), max_count)
        for i, x in enumerate(items):
            if not isinstance(x, str):
                raise APIError(f"`{name}`[{i}] must be a string, got {type(x).__name__}")
        return items, single


def _is_id(t) -> bool:
    return isinstance(t, int) and not isinstance(t, bool) and t >= 0


def check_count(n: int, max_count: int) -> None:
    if n > max_count:
        raise APIError(f"batch size {n} > maximum allowed batch size {max_count} (--max-client-batch-size)",
                       "Validation")


def truncation_direction(fields: Fields) -> str:
    """TEI's `truncation_direction`: "right" (keep the start) or "left" (keep the end), any case."""
    direction = fields.str("truncation_direction", "right")
    if direction.lower() not in ("right", "left"):
        raise APIError(f"truncation_direction={direction!r}; use 'Right' or 'Left'")
    return direction.lower()


# -- the application ------------------------------------------------------------------------------
class Server:
    """The routes over one served model and its batcher."""

    def __init__(self, served: Served, limits: Limits):
        self.served, self.limits, self.metrics = served, limits, Metrics()
        self.batcher = Batcher(self.metrics, limits.max_batch_tokens, limits.max_batch_requests, limits.max_wait_ms,
                               limits.max_concurrent_requests, limits.batching)
        self.metrics.in_flight = lambda: self.batcher.admitted
        # Large tokenizations at once: each holds its encodings in memory (about 200 bytes a token).
        self.tokenizing = asyncio.Semaphore(TOKENIZING_AT_ONCE)
        self.bodies = BodyBudget(limits.max_concurrent_requests * limits.payload_limit)

    def app(self) -> Starlette:
        routes = [("/embed", self.embed), ("/embed_all", self.embed_all), ("/predict", self.predict),
                  ("/rerank", self.rerank), ("/similarity", self.similarity), ("/tokenize", self.tokenize),
                  ("/decode", self.decode)]
        # POST / and /invocations (SageMaker's) run the served model's own TEI route, as TEI routes them.
        own = {"feature-extraction": self.embed, "rerank": self.rerank,
               "text-classification": self.rerank if self.served.is_reranker() else self.predict}
        if self.served.task.name in own:
            routes += [("/", own[self.served.task.name]), ("/invocations", own[self.served.task.name])]
        tei = {path for path, _ in routes} | {"/embeddings", "/v1/embeddings"}  # a task's route never shadows TEI's
        routes += [(f"/{verb}", self.task_route(task)) for verb, task in self.served.task_routes().items()
                   if f"/{verb}" not in tei]
        handlers = [Route(path, self.endpoint(path, fn), methods=["POST"]) for path, fn in routes]
        handlers += [Route(path, self.endpoint(path, self.openai_embeddings, openai=True), methods=["POST"])
                     for path in ("/v1/embeddings", "/embeddings")]
        # Open without the API key, as TEI keeps them: health checks and metrics scrapers carry no key.
        handlers += [Route(path, self.endpoint(path, self.health, model=False, open_route=True), methods=["GET"])
                     for path in ("/health", "/ping", "/")]
        handlers += [Route("/info", self.endpoint("/info", self.info, model=False), methods=["GET"]),
                     Route("/metrics", self.endpoint("/metrics", self.prometheus, model=False, open_route=True),
                           methods=["GET"])]

        async def not_found(request, exc: HTTPException):
            error_type = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "Unprocessable")
            detail = (f"no route {request.url.path}" if exc.status_code == 404 else
                      f"{request.method} is not allowed on {request.url.path}" if exc.status_code == 405 else exc.detail)
            self.metrics.observe_request("other", exc.status_code, error_type, 0.0, 0, 0)
            log.info("%s %s %d", request.method, request.url.path[:100], exc.status_code)
            return error_response(detail, error_type, exc.status_code)

        app = Starlette(routes=handlers, exception_handlers={HTTPException: not_found}, lifespan=self.lifespan)
        app.router.redirect_slashes = False  # its redirect names the request's Host header: any host a client sends
        return app

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.batcher.start()
        yield
        await self.batcher.close()  # the connections are closed by now: this runs what is left and stops

    def endpoint(self, route: str, fn, model: bool = True, openai: bool = False, open_route: bool = False):
        """Authorization, admission (the concurrency bound), errors, the log line, the metrics and TEI's timing
        headers around a route. `openai`: errors in OpenAI's shape; `open_route`: no API key asked (as TEI's
        health, ping and metrics)."""

        async def handle(request: Request) -> Response:
            start, ctx, error_type = time.perf_counter(), Ctx(), None
            try:
                if self.limits.api_key is not None and not open_route:
                    scheme, _, given = request.headers.get("authorization", "").partition(" ")
                    # the scheme is case-insensitive (RFC 9110 §11.1); the key is compared in constant time
                    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                             self.limits.api_key.encode()):
                        raise APIError("a valid `Authorization: Bearer` API key is required", "Unauthorized")
                if model:
                    check_json_content_type(request)
                if model:
                    # The whole body first: a client trickling its body holds a connection, never a model slot.
                    await read_json(request, self.limits.payload_limit, self.bodies)
                    try:
                        self.batcher.admit()
                    except Overloaded as e:
                        raise APIError(str(e), "Overloaded") from None
                    try:
                        response = await fn(request, ctx)
                    finally:
                        self.batcher.release()
                else:
                    response = await fn(request, ctx)
                if not isinstance(response, Response):
                    response = json_response(response)
            except APIError as e:
                error_type, response = e.error_type, error_response(str(e), e.error_type, e.status, openai)
            except (ClientDisconnect, ClientGone):
                error_type, response = "Disconnected", Response(status_code=499)  # nobody reads it
            except (ValueError, TypeError) as e:  # the pipeline's own checks of inputs and options
                error_type, response = "Unprocessable", error_response(str(e), "Unprocessable", 422, openai)
            except Exception as e:  # noqa: BLE001 - a bug or a model failure: one line, the server stays up
                log.exception("%s %s failed", request.method, route)
                error_type, response = "Backend", error_response(f"{type(e).__name__}: {e}", "Backend", 424, openai)
            seconds = time.perf_counter() - start
            if model and response.status_code == 200:
                response.headers.update(ctx.headers(seconds))
            if response.status_code == 413:  # the body was not read whole: this connection cannot carry another
                response.headers["connection"] = "close"
            self.metrics.observe_request(route, response.status_code, error_type, seconds, ctx.inputs, ctx.tokens)
            log.info("%s %s %d inputs=%d tokens=%d ms=%.1f", request.method, route, response.status_code,
                     ctx.inputs, ctx.tokens, seconds * 1000)
            return response

        return handle

    async def batched(self, request: Request, key: tuple, run, inputs: list, tokens: int, ctx: Ctx | None = None) -> list:
        """Queue the inputs for the model and wait for their results, or drop them if the client leaves."""
        job = self.batcher.submit(key, run, inputs, tokens)
        if ctx is not None:
            job.future.add_done_callback(lambda _: _timed(ctx, job))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({job.future, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not job.future.done():
            job.cancelled = True
            job.future.add_done_callback(lambda f: f.cancelled() or f.exception())  # its error, if any, is nobody's
            raise ClientGone()
        return job.future.result()

    async def lengths(self, items: list, truncate: bool, ctx: Ctx, cap: bool = True) -> list[int]:
        """Each input's token count; past the model's length it is an error unless truncation was asked for.
        A large request is tokenized off the event loop (a text may be a megabyte); a small one inline,
        where it costs less than the hop to a thread."""
        size = sum(len(x) if isinstance(x, (str, list)) else sum(map(len, x)) for x in items)
        ctx.characters = size
        started = time.perf_counter()
        if size > INLINE_CHARS:
            async with self.tokenizing:
                lengths = await run_in_threadpool(self.served.count_tokens, items)
        else:
            lengths = self.served.count_tokens(items)
        ctx.tokenization_s += time.perf_counter() - started
        limit = self.served.max_input_length
        if not truncate:
            for i, n in enumerate(lengths):
                if n > limit:
                    raise APIError(f"input {i} is {n} tokens long, more than the {limit} this model takes: send "
                                   "truncate=true, or start the server with --auto-truncate", "Validation")
        if cap:
            lengths = [min(n, limit) for n in lengths]
        ctx.tokens = sum(lengths)
        return lengths

    # -- TEI's routes ------------------------------------------------------------------------------
    def inputs(self, f: Fields, name: str = "inputs", ids: bool = True) -> tuple[list, bool]:
        """TEI's `Input`: a string, token ids `[int]`, or a batch of them: (the list, whether one was sent).
        An empty text is refused as TEI refuses it (400)."""
        value = f.body.get(name)
        if ids and isinstance(value, list) and value and all(_is_id(t) for t in value):
            items, single = [value], True
        elif ids and isinstance(value, list) and any(isinstance(x, list) for x in value):
            items, single = value, False
            check_count(len(items), self.limits.max_client_batch_size)
            for i, x in enumerate(items):
                if not (isinstance(x, str) or (isinstance(x, list) and x and all(_is_id(t) for t in x))):
                    raise APIError(f"`{name}`[{i}] must be a string or a list of token ids, got {json.dumps(x)[:80]}")
        else:
            items, single = f.texts(name, self.limits.max_client_batch_size)
        if any(isinstance(x, str) and not x for x in items):
            raise APIError(f"`{name}` cannot be empty", "Empty")
        return items, single

    def embed_options(self, f: Fields) -> tuple[bool, str, str | None]:
        """(truncate, truncation side, prompt text) as the embedding routes read them."""
        truncate = f.bool("truncate", self.limits.auto_truncate)
        return truncate, truncation_direction(f), self.served.prompt(f.str("prompt_name"))

    @staticmethod
    def prompted(items: list, prompt: str | None) -> list:
        return [prompt + x if prompt and isinstance(x, str) else x for x in items]

    async def embed(self, request: Request, ctx: Ctx):
        f = Fields(await read_json(request, self.limits.payload_limit),
                   ("inputs", "normalize", "truncate", "truncation_direction", "prompt_name", "dimensions"))
        texts, _ = self.inputs(f)
        normalize = f.bool("normalize", True)
        truncate, side, prompt = self.embed_options(f)
        dims = self.checked_dimensions(f.int("dimensions"))
        vectors = await self.embedded(request, ctx, texts, normalize, truncate, dims, prompt, side)
        return [np.asarray(v).tolist() for v in vectors]

    async def embedded(self, request: Request, ctx: Ctx, texts: list, normalize: bool, truncate: bool,
                       dims: int | None, prompt: str | None, side: str = "right") -> list:
        """The embedding routes' common path: the model check, the lengths, then the batched model call."""
        self.served.require("feature-extraction", request.url.path)
        ctx.inputs = len(texts)
        await self.lengths(self.prompted(texts, prompt), truncate, ctx)
        return await self.batched(request, ("embed", normalize, truncate, dims, prompt, side),
                                  lambda xs: self.served.embed(xs, normalize, truncate, dims, prompt, side),
                                  texts, ctx.tokens, ctx)

    async def embed_all(self, request: Request, ctx: Ctx):
        f = Fields(await read_json(request, self.limits.payload_limit),
                   ("inputs", "truncate", "truncation_direction", "prompt_name"))
        texts, _ = self.inputs(f)
        truncate, side, prompt = self.embed_options(f)
        self.served.require("feature-extraction", request.url.path)
        ctx.inputs = len(texts)
        await self.lengths(self.prompted(texts, prompt), truncate, ctx)
        tokens = await self.batched(request, ("embed_all", truncate, prompt, side),
                                    lambda xs: self.served.embed_all(xs, truncate, prompt, side), texts, ctx.tokens, ctx)
        return [t.tolist() for t in tokens]

    async def similarity(self, request: Request, ctx: Ctx):
        """TEI's /similarity (huggingface_hub's `sentence_similarity`): the cosine of each sentence's embedding
        with the source sentence's."""
        f = Fields(await read_json(request, self.limits.payload_limit), ("inputs", "parameters"))
        value = f.body.get("inputs")
        if not isinstance(value, dict) or not isinstance(value.get("source_sentence"), str) \
                or not isinstance(value.get("sentences"), list):
            raise APIError("`inputs` must be {\"source_sentence\": string, \"sentences\": [string, ...]}")
        if not value["sentences"]:
            raise APIError("`inputs.sentences` cannot be empty", "Empty")
        params = f.body.get("parameters") or {}
        if not isinstance(params, dict):
            raise APIError("`parameters` must be an object")
        p = Fields(params, ("truncate", "truncation_direction", "prompt_name"))
        texts, _ = Fields({"inputs": [value["source_sentence"], *value["sentences"]]}, ("inputs",)).texts(
            "inputs", self.limits.max_client_batch_size)
        truncate, side, prompt = self.embed_options(p)
        vectors = await self.embedded(request, ctx, texts, True, truncate, None, prompt, side)
        source = np.asarray(vectors[0], np.float64)
        return [float(np.dot(source, np.asarray(v, np.float64))) for v in vectors[1:]]

    def checked_dimensions(self, dims):
        if dims is not None and dims > self.served.dimension:
            raise APIError(f"dimensions={dims} is more than the model's {self.served.dimension}")
        return dims

    async def openai_embeddings(self, request: Request, ctx: Ctx):
        f = Fields(await read_json(request, self.limits.payload_limit),
                   ("input", "model", "encoding_format", "dimensions", "user"))
        texts, _ = self.inputs(f, "input")
        for name in ("model", "user"):  # accepted and checked, as OpenAI's clients send them; one model is served
            f.str(name)
        encoding = f.str("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise APIError(f"encoding_format={encoding!r}; use 'float' or 'base64'")
        dims = self.checked_dimensions(f.int("dimensions"))
        prompt = self.served.prompt(None)  # the folder's default prompt, if any
        vectors = await self.embedded(request, ctx, texts, True, self.limits.auto_truncate, dims, prompt)
        data = []
        for i, v in enumerate(vectors):
            v = np.asarray(v, np.float32)
            value = base64.b64encode(v.astype("<f4").tobytes()).decode() if encoding == "base64" else v.tolist()
            data.append({"object": "embedding", "embedding": value, "index": i})
        return {"object": "list", "data": data, "model": self.served.served_model_name,
                "usage": {"prompt_tokens": ctx.tokens, "total_tokens": ctx.tokens}}

    async def predict(self, request: Request, ctx: Ctx):
        f = Fields(await read_json(request, self.limits.payload_limit),
                   ("inputs", "raw_scores", "truncate", "truncation_direction"))
        items, single = predict_inputs(f.body.get("inputs"), self.limits.max_client_batch_size)
        raw, truncate = f.bool("raw_scores", False), f.bool("truncate", self.limits.auto_truncate)
        side = truncation_direction(f)
        self.served.require("text-classification", request.url.path)
        ctx.inputs = len(items)
        await self.lengths(items, truncate, ctx)
        results = await self.batched(request, ("predict", raw, truncate, side),
                                     lambda xs: self.served.predict(xs, raw, truncate, side), items, ctx.tokens, ctx)
        return results[0] if single else results

    async def rerank(self, request: Request, ctx: Ctx):
        f = Fields(await read_json(request, self.limits.payload_limit),
                   ("query", "texts", "raw_scores", "return_text", "truncate", "truncation_direction"))
        query = f.str("query", required=True)
        if not query.strip():
            raise APIError("`query` cannot be empty", "Empty")
        texts, _ = f.texts("texts", self.limits.max_client_batch_size)
        raw, return_text = f.bool("raw_scores", False), f.bool("return_text", False)
        truncate = f.bool("truncate", self.limits.auto_truncate)
        side = truncation_direction(f)
        self.served.require_reranker()
        if len(query) > INLINE_CHARS and side == "right":
            query = await run_in_threadpool(self.served.cut_to_length, query)
        pairs = [(query, t) for t in texts]
        ctx.inputs = len(pairs)
        await self.lengths(pairs, truncate, ctx)
        scores = await self.batched(request, ("rerank", raw, truncate, side),
                                    lambda xs: self.served.rerank(xs, raw, truncate, side), pairs, ctx.tokens, ctx)
        ranks = [{"index": i, "score": float(s), **({"text": texts[i]} if return_text else {})}
                 for i, s in enumerate(scores)]
        return sorted(ranks, key=lambda r: -r["score"])

    async def tokenize(self, request: Request, ctx: Ctx):
        f = Fields(await read_json(request, self.limits.payload_limit), ("inputs", "add_special_tokens", "prompt_name"))
        texts, _ = f.texts("inputs", self.limits.max_client_batch_size)
        special = f.bool("add_special_tokens", True)
        texts = self.served.with_prompt(texts, f.str("prompt_name"))
        ctx.inputs = len(texts)
        most = self.limits.max_client_batch_size * self.served.max_input_length
        async with self.tokenizing:
            result = await run_in_threadpool(self.served.tokenize, texts, special, most)
        ctx.tokens = sum(len(r) for r in result)
        return result

    async def decode(self, request: Request, ctx: Ctx):
        f = Fields(await read_json(request, self.limits.payload_limit), ("ids", "skip_special_tokens"))
        value = f.body.get("ids")
        if isinstance(value, list) and value and all(_is_id(t) for t in value):
            rows = [value]
        elif isinstance(value, list) and value and all(isinstance(r, list) and all(_is_id(t) for t in r) for r in value):
            rows = value
        else:
            raise APIError("`ids` must be a list of token ids or a list of such lists")
        check_count(len(rows), self.limits.max_client_batch_size)
        ctx.inputs = len(rows)
        return self.served.decode(rows, f.bool("skip_special_tokens", True))

    # -- the other tasks ---------------------------------------------------------------------------
    def task_route(self, task: str):
        async def route(request: Request, ctx: Ctx):
            return await self.run_task(request, ctx, task)

        return route

    async def run_task(self, request: Request, ctx: Ctx, task: str):
        f = Fields(await read_json(request, self.limits.payload_limit), ("inputs", "parameters"))
        value, params = f.body.get("inputs"), f.body.get("parameters") or {}
        if value is None:
            raise APIError("`inputs` is missing")
        if not isinstance(params, dict):
            raise APIError(f"`parameters` must be an object of the pipeline's options, got {type(params).__name__}")
        single = not isinstance(value, list)
        items = [value] if single else value
        if not items:
            raise APIError("`inputs` cannot be empty", "Empty")
        check_count(len(items), self.limits.max_client_batch_size)
        self.served.require(task, request.url.path)
        checked, params = self.served.check_task_inputs(items, params)  # ValueError/TypeError: 422
        ctx.inputs = len(items)
        # The task's own pipeline decides about long inputs, but its work (QA reads every window of a long
        # context) is what the batcher's budget counts, and one request may not hold the model for longer than a
        # full batch would.
        lengths = await self.lengths(checked, True, ctx, cap=False)
        if sum(lengths) > self.limits.max_batch_tokens:
            raise APIError(f"the inputs are {sum(lengths)} tokens, more than the {self.limits.max_batch_tokens} one "
                           "request may run (--max-batch-tokens)", "Validation")
        records = await self.batched(request, ("task", json.dumps(params, sort_keys=True)),
                                     lambda xs: self.served.task_records(xs, params), items, ctx.tokens, ctx)
        return records[0] if single else records

    # -- about the server --------------------------------------------------------------------------
    async def health(self, request: Request, ctx: Ctx):
        return Response(status_code=200)  # routes answer only once the model is loaded and warmed

    async def info(self, request: Request, ctx: Ctx):
        """Every field of TEI's `Info` (null where it has no meaning here), then minibert's own."""
        lim = self.limits
        return {**self.served.info(), "max_concurrent_requests": lim.max_concurrent_requests,
                "max_input_length": self.served.max_input_length, "max_batch_tokens": lim.max_batch_tokens,
                "max_batch_requests": lim.max_batch_requests, "max_client_batch_size": lim.max_client_batch_size,
                "auto_truncate": lim.auto_truncate, "tokenization_workers": TOKENIZING_AT_ONCE,
                "version": __version__, "sha": None, "docker_label": None,
                "max_wait_ms": lim.max_wait_ms, "payload_limit": lim.payload_limit, "batching": lim.batching}

    async def prometheus(self, request: Request, ctx: Ctx):
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _timed(ctx: Ctx, job) -> None:
    """The job's queue and inference times, once its batch has run."""
    if job.started is not None:
        ctx.queue_s, ctx.inference_s = job.started - job.arrived, time.monotonic() - job.started


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (after the body is read, the next ASGI message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(0)


def predict_inputs(value, max_count: int) -> tuple[list, bool]:
    """TEI's predict input: "text", ["text", "pair"], or a batch [["text"], ["text", "pair"], ...].
    Returns the pipeline inputs (a text, or a (text, pair) tuple) and whether one input was sent."""
    shape = 'a string, a pair ["text", "text pair"] or a batch [["text"], ["text", "text pair"], ...]'
    if isinstance(value, str):
        return [value], True
    if not isinstance(value, list):
        raise APIError(f"`inputs` must be {shape}, got {type(value).__name__ if value is not None else 'nothing'}")
    if not value:
        raise APIError("`inputs` cannot be empty", "Empty")
    if isinstance(value[0], str):
        if len(value) > 2 or not all(isinstance(x, str) for x in value):
            raise APIError(f"`inputs` must be {shape}; a list of strings is one text or one pair, got {len(value)} items")
        return [value[0] if len(value) == 1 else (value[0], value[1])], True
    check_count(len(value), max_count)
    items = []
    for i, x in enumerate(value):
        if not isinstance(x, list) or len(x) not in (1, 2) or not all(isinstance(s, str) for s in x):
            raise APIError(f"`inputs`[{i}] must be [\"text\"] or [\"text\", \"text pair\"]")
        items.append(x[0] if len(x) == 1 else (x[0], x[1]))
    return items, False
