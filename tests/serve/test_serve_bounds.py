"""What keeps `minibert serve` bounded: queued work of a client that has gone is dropped before it runs,
a body over --payload-limit is refused before it is read whole, and --max-concurrent-requests counts every
request from the moment its whole body is in.

Each test needs the model thread held busy while requests queue behind it, which the subprocess server
gives no way to do. So this module runs the real app (`Server(...).app()`, its batcher and metrics) under
real uvicorn in a thread of this process, on the tiny cross-encoder's real pipeline, with one change: the
model call passes a `Gate` that records what it was given and waits until the test opens it. Every
wait in these tests is for a state the server reports (/metrics), never for a length of time.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time

import httpx
import pytest

CONCURRENT = 4  # --max-concurrent-requests of this module's server
PAYLOAD = 20_000  # --payload-limit of this module's server, in bytes
WAIT = 60  # seconds before a wait for the server's state gives up: a hang guard, not a timing


class Gate:
    """Stands in for `Served.predict` on the model thread: records each call's inputs, and waits while shut."""

    def __init__(self, predict):
        self.predict, self.calls = predict, []
        self.opened, self.entered = threading.Event(), threading.Semaphore(0)

    def __call__(self, items, *options):
        self.calls.append(list(items))
        self.entered.release()
        if not self.opened.wait(WAIT * 2):
            raise RuntimeError("the test never opened the gate")
        return self.predict(items, *options)

    def texts(self) -> list:
        return [x for call in self.calls for x in call]


class InProcess:
    """The app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.host, self.port = self.sock.getsockname()
        self.url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, "the server to start")

    def stop(self):
        self.server.should_exit = True
        self.thread.join(WAIT)
        self.sock.close()


@pytest.fixture(scope="module")
def app(launched):
    from minibert.pipelines import pipeline
    from minibert.serve.app import Limits, Server
    from minibert.serve.model import Served

    folder = launched["cross-encoder"][0]
    served = Served(pipeline("text-classification", model=folder), "text-classification", "tiny", folder)
    served.predict(["warm"], False, False)  # compiles the short inputs' shape here, not inside a test
    server = Server(served, Limits(max_concurrent_requests=CONCURRENT, payload_limit=PAYLOAD, max_wait_ms=0))
    running = InProcess(server.app())
    yield running, server, served
    running.stop()


@pytest.fixture
def gate(app):
    """The model call held shut until the test opens it (opened at the end whatever happened)."""
    _, _, served = app
    gate = served.predict = Gate(served.predict)
    yield gate
    gate.opened.set()
    del served.predict


@pytest.fixture
def client(app):
    with httpx.Client(base_url=app[0].url, timeout=WAIT * 2) as c:
        yield c


# -- helpers ---------------------------------------------------------------------------------------
def wait_for(condition, what: str):
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {WAIT} s for {what}")
        time.sleep(0.01)


def metric(client, name: str, labels: str = "") -> float:
    """One sample of /metrics (0 if the server has not written it yet)."""
    text = client.get("/metrics").text
    found = re.search(rf"^{re.escape(name + (f'{{{labels}}}' if labels else ''))} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def post_in_thread(url: str, body: dict) -> tuple[threading.Thread, list]:
    """POST /predict from a thread; the list gets the response."""
    out = []

    def post():
        with httpx.Client(base_url=url, timeout=WAIT * 2) as c:
            out.append(c.post("/predict", json=body))

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread, out


def connect(server) -> socket.socket:
    s = socket.create_connection((server.host, server.port))
    s.settimeout(WAIT)
    return s


def head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(s: socket.socket) -> tuple[int, dict, dict]:
    """Status, headers (lower-case names) and JSON body of one response read from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {data!r}"
        data += chunk
    top, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = top.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    while len(body) < int(headers["content-length"]):
        chunk = s.recv(65536)
        assert chunk, "the server closed the connection mid-answer"
        body += chunk
    return int(status_line.split()[1]), headers, json.loads(body)


PREDICT_499 = 'route="/predict",status="499"'


# -- cancelled work --------------------------------------------------------------------------------
def test_queued_work_of_a_disconnected_client_is_dropped(app, gate, client):
    server = app[0]
    before = {name: metric(client, name) for name in
              ("minibert_cancelled_total", "minibert_batch_requests_sum", "minibert_batch_inputs_sum")}
    gone_before = metric(client, "minibert_requests_total", PREDICT_499)
    holder, held = post_in_thread(server.url, {"inputs": "holding the model"})
    assert gate.entered.acquire(timeout=WAIT), "the first request never reached the model"

    # Three clients queue behind it, then hang up while their work is still queued.
    gone = [f"gone client {i}" for i in range(3)]
    sockets = []
    for i, text in enumerate(gone):
        body = json.dumps({"inputs": [[text], [text, "pair"]]}).encode()
        s = connect(server)
        s.sendall(head("/predict", f"Content-Length: {len(body)}") + body)
        sockets.append(s)
        wait_for(lambda: metric(client, "minibert_queue_depth") == i + 1, f"request {i} to be queued")
    for s in sockets:
        s.close()
    wait_for(lambda: metric(client, "minibert_requests_total", PREDICT_499) == gone_before + 3,
             "the server to see the three clients go")
    assert metric(client, "minibert_queue_depth") == 3  # not yet dropped: the model is still busy

    # A client that stays queues behind them; then the model is let go.
    stayer, stayed = post_in_thread(server.url, {"inputs": [["still wanted"]]})
    wait_for(lambda: metric(client, "minibert_queue_depth") == 4, "the last request to be queued")
    gate.opened.set()
    holder.join(WAIT * 2)
    stayer.join(WAIT * 2)
    assert held[0].status_code == 200 and stayed[0].status_code == 200, (held, stayed)
    assert len(stayed[0].json()) == 1

    assert gate.texts() == ["holding the model", "still wanted"]  # the gone clients' texts never ran
    assert not any(isinstance(x, tuple) for x in gate.texts())
    assert metric(client, "minibert_cancelled_total") == before["minibert_cancelled_total"] + 3
    assert metric(client, "minibert_batch_requests_sum") == before["minibert_batch_requests_sum"] + 2
    assert metric(client, "minibert_batch_inputs_sum") == before["minibert_batch_inputs_sum"] + 2
    assert metric(client, "minibert_queue_depth") == 0 and metric(client, "minibert_requests_in_flight") == 0


# -- the memory bound: --max-concurrent-requests bodies of at most --payload-limit bytes --------------
def test_content_length_over_the_limit_is_refused_before_the_body(app):
    with connect(app[0]) as s:
        s.sendall(head("/predict", f"Content-Length: {PAYLOAD + 1}"))  # and not one byte of the body
        status, _, body = read_response(s)
    assert status == 413 and body["error_type"] == "Validation", body
    assert f"{PAYLOAD + 1} bytes, more than the {PAYLOAD}" in body["error"] and "--payload-limit" in body["error"]


def test_chunked_body_past_the_limit_is_refused_while_it_is_still_coming(app, client):
    """No Content-Length: the server reads the chunks, and answers 413 once they pass the limit,
    without waiting for the body's end (which never comes)."""
    chunk = b'{"inputs": "' + b"a" * 4000
    with connect(app[0]) as s:
        s.sendall(head("/predict", "Transfer-Encoding: chunked"))
        for _ in range(PAYLOAD // len(chunk) + 2):  # past the limit; no terminating 0-length chunk
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, _, body = read_response(s)
    assert status == 413 and body["error_type"] == "Validation", body
    assert f"more than the {PAYLOAD} bytes" in body["error"] and "--payload-limit" in body["error"]
    # Under the limit, a chunked body is read whole and answered.
    r = client.post("/predict", content=iter([b'{"inputs": ', b'"a chunked request"}']),
                    headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()[0]["label"] == "LABEL_0"


def test_requests_past_the_bound_get_429_and_half_sent_bodies_hold_no_slot(app, gate, client):
    """--max-concurrent-requests counts a request from the moment its whole body is in to its answer: clients
    that send half a body hold no slot (the read deadline closes them), the bound fills with requests the
    model has to run, the next is refused at once, and the slots come back after."""
    server = app[0]
    holder, held = post_in_thread(server.url, {"inputs": "holding the model"})
    assert gate.entered.acquire(timeout=WAIT), "the first request never reached the model"
    half = []
    for _ in range(CONCURRENT + 2):
        s = connect(server)
        s.sendall(head("/predict", "Content-Length: 1000") + b'{"inputs": "')
        half.append(s)
    queued = [post_in_thread(server.url, {"inputs": f"queued {i}"}) for i in range(CONCURRENT - 1)]
    wait_for(lambda: metric(client, "minibert_queue_depth") == CONCURRENT - 1, "the requests to be queued")
    assert metric(client, "minibert_requests_in_flight") == CONCURRENT

    r = client.post("/predict", json={"inputs": "one too many"})
    assert r.status_code == 429 and r.json()["error_type"] == "Overloaded", r.text
    assert f"--max-concurrent-requests={CONCURRENT}" in r.json()["error"]
    assert client.get("/health").status_code == 200  # the routes that hold no body are not counted

    for s in half:
        s.close()
    gate.opened.set()
    holder.join(WAIT * 2)
    for thread, _ in queued:
        thread.join(WAIT * 2)
    assert held[0].status_code == 200 and all(out[0].status_code == 200 for _, out in queued)
    texts = gate.texts()  # the queued ones in any order: their threads race to the server
    assert texts[0] == "holding the model" and sorted(texts[1:]) == [f"queued {i}" for i in range(CONCURRENT - 1)]
    assert metric(client, "minibert_requests_in_flight") == 0
    assert client.post("/predict", json={"inputs": "room again"}).status_code == 200
