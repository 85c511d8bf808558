"""`minibert serve` as users meet it: the real server in a subprocess, a real HTTP client.

One server for the module, on a tiny one-label cross-encoder (so both /predict and /rerank run); every
answer is compared with the pipeline's own results for the same inputs, in this process. The load,
overload and SIGTERM tests come last: the last one stops the server.
"""
from __future__ import annotations

import json
import random
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from reference import REPO, sst2_train_texts
from server import CONCURRENT, MAX_LENGTH

TOL = 1e-6
# What 64 clients against a bound of 16 may add to the server's resident memory (docs/serve.md states it).
OVERLOAD_GROWTH_MB = 100


@pytest.fixture(scope="module")
def folder(launched):
    return launched["cross-encoder"][0]


@pytest.fixture(scope="module")
def served(launched):
    """The server and, built while it starts, the pipeline whose results it must give."""
    from minibert.pipelines import pipeline

    folder, server = launched["cross-encoder"]
    pipe = pipeline("text-classification", model=folder)
    yield server.wait_ready(), pipe
    server.stop()


@pytest.fixture(scope="module")
def server(served):
    return served[0]


@pytest.fixture(scope="module")
def pipe(served):
    return served[1]


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


FILLER = ["filler"] * 5  # past the XLA buckets: every expectation runs the one open-shape graph, as the server does


def ranked(pipe, items, **options):
    """The pipeline's every-label results for texts or (text, pair) tuples."""
    inputs = [{"text": x[0], "text_pair": x[1]} if isinstance(x, tuple) else x for x in items]
    return pipe.results_for(inputs + FILLER, top_k=None, **options)[:len(inputs)]


def assert_labels(got, want):
    assert [r["label"] for r in got] == [r["label"] for r in want]
    for g, w in zip(got, want):
        assert abs(g["score"] - w["score"]) <= TOL, (got, want)


def error(response, status, *words):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_type"}, body
    for w in words:
        assert w in body["error"], body
    return body


# -- routes ----------------------------------------------------------------------------------------
def test_health_and_info(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.content == b""
    info = client.get("/info").json()
    assert info["model_type"] == {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}
    assert info["engine"] == "keras"  # MINIBERT_ENGINE, which tests/conftest.py sets and the server inherits
    limits = info["max_input_length"], info["max_concurrent_requests"], info["max_client_batch_size"]
    assert limits == (MAX_LENGTH, CONCURRENT, 32)


def test_predict_texts_pairs_and_batches(client, pipe):
    r = client.post("/predict", json={"inputs": "a gripping, funny film"})
    assert_labels(r.json(), ranked(pipe, ["a gripping, funny film"])[0])
    r = client.post("/predict", json={"inputs": ["is it good?", "a gripping, funny film"]})
    assert_labels(r.json(), ranked(pipe, [("is it good?", "a gripping, funny film")])[0])
    batch = [["dull"], ["is it good?", "yes it is"], ["an hour too long and not a minute of it earned"]]
    r = client.post("/predict", json={"inputs": batch, "raw_scores": True})
    want = ranked(pipe, [b[0] if len(b) == 1 else tuple(b) for b in batch], function_to_apply="none")
    assert len(r.json()) == 3
    for got, w in zip(r.json(), want):
        assert_labels(got, w)


def test_rerank_scores_order_and_text(client, pipe):
    query, texts = "a funny film", ["a gripping, funny film", "dull", "the cast is fine", "funny"]
    r = client.post("/rerank", json={"query": query, "texts": texts, "return_text": True})
    want = [w[0]["score"] for w in ranked(pipe, [(query, t) for t in texts], function_to_apply="sigmoid")]
    got = r.json()
    assert [g["index"] for g in got] == sorted(range(len(texts)), key=lambda i: -want[i])
    for g in got:
        assert abs(g["score"] - want[g["index"]]) <= TOL and g["text"] == texts[g["index"]]
    raw = client.post("/rerank", json={"query": query, "texts": texts, "raw_scores": True}).json()
    logits = [w[0]["score"] for w in ranked(pipe, [(query, t) for t in texts], function_to_apply="none")]
    assert all("text" not in g and abs(g["score"] - logits[g["index"]]) <= TOL for g in raw)


def test_rerank_matches_sentence_transformers_cross_encoder(client, folder):
    from sentence_transformers import CrossEncoder

    query, texts = "a funny film", ["a gripping, funny film", "dull", "the cast is fine"]
    want = CrossEncoder(folder, device="cpu").predict([(query, t) for t in texts])
    for g in client.post("/rerank", json={"query": query, "texts": texts}).json():
        assert abs(g["score"] - float(want[g["index"]])) <= 1e-5  # torch against TensorFlow: the parity tolerance


def test_long_inputs_refused_unless_truncated(client, pipe):
    long = " ".join(["wonderful"] * 200)  # 202 tokens
    error(client.post("/predict", json={"inputs": long}), 422, "202 tokens", f"{MAX_LENGTH}", "truncate")
    error(client.post("/rerank", json={"query": "q", "texts": ["ok", long]}), 422, "input 1")
    r = client.post("/predict", json={"inputs": long, "truncate": True})
    assert_labels(r.json(), ranked(pipe, [long], truncation=True, max_length=MAX_LENGTH)[0])


def test_tokenize(client, pipe):
    text = "Hello, HuggingFace!"
    got = client.post("/tokenize", json={"inputs": [text]}).json()[0]
    enc = pipe.tokenizer(text)
    assert [t["id"] for t in got] == enc["input_ids"]
    assert got[0] == {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None}
    assert [t["text"] for t in got[1:3]] == ["Hello", ","] and got[1]["start"] == 0 and got[1]["stop"] == 5
    plain = client.post("/tokenize", json={"inputs": text, "add_special_tokens": False}).json()[0]
    assert [t["id"] for t in plain] == enc["input_ids"][1:-1]


def test_routes_of_other_tasks_name_the_right_route(client):
    error(client.post("/embed", json={"inputs": "x"}), 400, "feature-extraction", "/predict or /rerank")
    error(client.post("/ner", json={"inputs": "x"}), 400, "token-classification")


# -- bad input -------------------------------------------------------------------------------------
BAD = [
    ("not json", b"{inputs: 1", 422, "not valid JSON"),
    ("invalid utf-8", b'{"inputs": "caf\xe9"}', 422, "not valid UTF-8 (byte 0xe9"),
    ("a list body", b'["text"]', 422, "JSON object"),
    ("empty body", b"", 422, "no body"),
    ("number input", b'{"inputs": 3}', 422, "`inputs` must be"),
    ("three strings", b'{"inputs": ["a", "b", "c"]}', 422, "one text or one pair"),
    ("mixed batch", b'{"inputs": [["a"], 3]}', 422, "`inputs`[1]"),
    ("empty inputs", b'{"inputs": []}', 400, "cannot be empty"),
    ("string bool", b'{"inputs": "a", "raw_scores": "yes"}', 422, "`raw_scores` must be true or false"),
    ("lone surrogate", b'{"inputs": "\\ud800"}', 422, "lone surrogate"),
    ("a million characters", json.dumps({"inputs": "good " * 200_000}).encode(), 422, "tokens long"),
    ("a hundred thousand inputs", json.dumps({"inputs": [["a"]] * 100_000}).encode(), 422, "batch size 100000 > maximum"),
    ("three megabytes", json.dumps({"inputs": "a" * 3_000_000}).encode(), 413, "more than the 2000000"),
]


@pytest.mark.parametrize("body,status,words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_a_clear_error(client, body, status, words):
    error(client.post("/predict", content=body, headers={"content-type": "application/json"}), status, words)


def test_bad_routes_methods_and_rerank_fields(client):
    error(client.get("/nope"), 404, "no route /nope")
    error(client.get("/predict"), 405, "GET is not allowed")
    error(client.post("/rerank", json={"query": 1, "texts": ["a"]}), 422, "`query` must be a string")
    error(client.post("/rerank", json={"query": "q", "texts": []}), 400, "cannot be empty")
    error(client.post("/rerank", json={"texts": ["a"]}), 422, "`query` is missing")
    assert client.get("/health").status_code == 200


def test_client_disconnecting_mid_request(server, client):
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"inputs": [["fine"]] * 32}).encode()
    for sent in (body[:20], body):  # mid-body, and a whole request whose answer nobody waits for
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + sent)
    r = client.post("/predict", json={"inputs": "still here"})
    assert r.status_code == 200 and len(r.json()) == 1


def test_start_up_errors_are_one_line(folder):
    env = {"PYTHONPATH": REPO, "PATH": "/usr/bin:/bin"}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "minibert", "serve", "--model", folder, "--port", str(port)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "in use" in r.stderr
    r = subprocess.run([sys.executable, "-m", "minibert", "serve", "--model", "/no/such/folder", "--port", "0"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "/no/such/folder" in r.stderr


# -- load, overload, shutdown ----------------------------------------------------------------------
def workload(n: int, seed: int) -> list:
    """n requests of mixed lengths and shapes: one text, one pair, or a small batch of both."""
    rng, texts = random.Random(seed), sst2_train_texts(300)
    requests = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.4:
            requests.append(rng.choice(texts))
        elif kind < 0.7:
            requests.append([rng.choice(texts), rng.choice(texts)])
        else:
            requests.append([[rng.choice(texts)] if rng.random() < 0.5 else [rng.choice(texts), rng.choice(texts)]
                             for _ in range(rng.randint(1, 4))])
    return requests


def expected(pipe, requests: list) -> list:
    """The pipeline's answer to each request, from one pipeline call over all of them."""
    items, spans = [], []
    for req in requests:
        batch = [req] if isinstance(req, str) else [req] if isinstance(req[0], str) else req
        start = len(items)
        for x in batch:
            items.append(x if isinstance(x, str) else x[0] if len(x) == 1 else tuple(x))
        spans.append((start, len(items), not isinstance(req, str) and not isinstance(req[0], str)))
    results = ranked(pipe, items, truncation=True, max_length=MAX_LENGTH)
    return [results[a:b] if is_batch else results[a] for a, b, is_batch in spans]


def send_all(url: str, requests: list, clients: int, stop: threading.Event | None = None, outcomes=None) -> list:
    """Send the requests from `clients` threads (each request once); (index, status or error, body) per request,
    appended to `outcomes` as they come."""
    outcomes, lock, queue = [] if outcomes is None else outcomes, threading.Lock(), list(enumerate(requests))

    def worker():
        with httpx.Client(base_url=url, timeout=120) as c:
            while True:
                with lock:
                    if not queue or (stop is not None and stop.is_set()):
                        return
                    i, req = queue.pop()
                try:
                    r = c.post("/predict", json={"inputs": req, "truncate": True})
                    outcome = (i, r.status_code, r.json())
                except httpx.HTTPError as e:
                    outcome = (i, type(e).__name__, None)
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def assert_answers(outcomes, want):
    for i, status, body in outcomes:
        if status == 200:
            if isinstance(body[0], dict):
                assert_labels(body, want[i])
            else:
                assert len(body) == len(want[i])
                for g, w in zip(body, want[i]):
                    assert_labels(g, w)


def metric(text: str, name: str) -> float:
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def test_concurrent_clients_each_get_their_own_answers(server, client, pipe):
    requests = workload(200, seed=0)
    want = expected(pipe, requests)
    before = client.get("/metrics").text
    outcomes = send_all(server.url, requests, CONCURRENT)
    assert sorted(i for i, _, _ in outcomes) == list(range(len(requests)))  # none lost or duplicated
    assert {status for _, status, _ in outcomes} == {200}
    assert_answers(outcomes, want)
    after = client.get("/metrics").text
    calls = metric(after, "minibert_batch_requests_count") - metric(before, "minibert_batch_requests_count")
    batched = metric(after, "minibert_batch_requests_sum") - metric(before, "minibert_batch_requests_sum")
    assert batched == len(requests) and batched / calls > 1.0, (batched, calls)  # the batcher really batched


@pytest.mark.slow
def test_sixty_four_clients_two_thousand_requests(server, client, pipe):
    requests = workload(2000, seed=3)
    want = expected(pipe, requests)
    outcomes = send_all(server.url, requests, 64)
    assert sorted(i for i, _, _ in outcomes) == list(range(len(requests)))
    assert {status for _, status, _ in outcomes} <= {200, 429}  # 64 clients against a bound of 16: some 429s
    assert_answers(outcomes, want)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_overload_gives_429_and_the_rest_are_right(server, client, pipe):
    """4x the request bound at once: 429 for the excess, right answers for the rest, and the server's resident
    memory stays within OVERLOAD_GROWTH_MB of where it started (sampled every 20 ms during the load)."""
    requests = workload(200, seed=1)
    want = expected(pipe, requests)
    before, peak, done = rss_mb(server.proc.pid), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(server.proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        outcomes = send_all(server.url, requests, 4 * CONCURRENT)
    finally:
        done.set()
        sampler.join()
    assert peak[0] - before <= OVERLOAD_GROWTH_MB, (before, peak[0])
    statuses = [s for _, s, _ in outcomes]
    assert set(statuses) == {200, 429} and statuses.count(429) > 0
    assert all(b["error_type"] == "Overloaded" for _, s, b in outcomes if s == 429)
    assert_answers(outcomes, want)
    assert client.get("/metrics").status_code == 200


def test_sigterm_during_load_loses_no_accepted_request(server, pipe):
    requests = workload(400, seed=2)
    want = expected(pipe, requests)
    logged_before = sum(" /predict 200 " in line for line in server.lines)
    stop, result = threading.Event(), []
    sender = threading.Thread(target=send_all, args=(server.url, requests, CONCURRENT, stop, result))
    sender.start()
    deadline = time.monotonic() + 120
    while len(result) < 50 and time.monotonic() < deadline:  # the load is under way
        time.sleep(0.05)
    assert server.proc.poll() is None and len(result) < len(requests)
    server.proc.send_signal(__import__("signal").SIGTERM)
    assert server.proc.wait(120) == 0
    server.reader.join(10)  # every line the server wrote has been read
    stop.set()
    sender.join()
    answered = [o for o in result if o[1] == 200]
    refused = [o for o in result if o[1] != 200]
    assert answered, "no request finished before the shutdown"
    assert all(isinstance(s, str) for _, s, _ in refused), refused[:3]  # not an HTTP error: a connection refused
    assert_answers(answered, want)
    logged = sum(" /predict 200 " in line for line in server.lines) - logged_before
    assert logged == len(answered)  # every request the server answered reached its client
