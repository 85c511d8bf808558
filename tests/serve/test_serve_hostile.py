"""The server under attack, on loopback with real sockets: idle and trickling connections, slow bodies,
SIGTERM during one, amplifying and deeply nested requests, a huge rerank query, a folder's default prompt,
impossible flags. Every loop here is bounded in count and time."""
from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from server import EMBED_MAX_SEQ, PROMPTS, REPO, Server, sentence_transformers_folder, tiny_checkpoint

READ_TIMEOUT = 2.0


def host_port(server):
    host, port = server.url.split("//")[1].split(":")
    return host, int(port)


def open_socket(server) -> socket.socket:
    s = socket.create_connection(host_port(server), timeout=10)
    s.settimeout(10)
    return s


def closed_within(s: socket.socket, seconds: float) -> bool:
    """Whether the server closes `s` (recv gives b'' or a reset) within `seconds`."""
    s.settimeout(seconds)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    """An embedder whose folder puts a default prompt before every text, with a short read deadline,
    few model slots, and a low descriptor limit (so the connection cap is 192)."""
    folder = sentence_transformers_folder(tmp_path_factory.mktemp("embedder_default_prompt"))
    path = os.path.join(folder, "config_sentence_transformers.json")
    with open(path, "w") as f:
        json.dump({"prompts": PROMPTS, "default_prompt_name": "query"}, f)

    def low_descriptors():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    server = Server("--model", folder, "--read-timeout", str(READ_TIMEOUT), "--max-concurrent-requests", "8",
                    "--max-client-batch-size", "16", preexec_fn=low_descriptors).wait_ready()
    yield folder, server
    server.stop()


def test_idle_and_trickling_connections_are_closed_and_cannot_starve_others(embedder):
    folder, server = embedder
    idle = []
    try:
        for _ in range(300):  # past the connection cap of this server (256 descriptors)
            try:
                idle.append(socket.create_connection(host_port(server), timeout=5))
            except OSError:
                break
        trickle = open_socket(server)
        trickle.sendall(b"POST /embed HTTP/1.1\r\n")
        start = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=15) as client:
            r = client.post("/embed", json={"inputs": "still answered"})
            assert r.status_code == 200, r.text
        assert time.monotonic() - start < 10
        deadline = time.monotonic() + READ_TIMEOUT + 5
        cut = False
        for ch in b"Host: x\r\nX-Slow: " + b"y" * 40:  # a byte every 0.5 s keeps no connection open past the deadline
            try:
                trickle.sendall(bytes([ch]))
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            time.sleep(0.5)
            if time.monotonic() > deadline:
                break
        assert cut or closed_within(trickle, 1)
        assert time.monotonic() - start < READ_TIMEOUT + 12
        assert closed_within(idle[0], READ_TIMEOUT + 5)
    finally:
        for s in idle:
            s.close()
    assert sum("Traceback" in line for line in server.lines) == 0
    assert sum("descriptor" in line or "cap reached" in line for line in server.lines) <= 3


def test_slow_bodies_do_not_hold_model_slots(embedder):
    folder, server = embedder
    slow = []
    try:
        for _ in range(12):  # more than the 8 model slots
            s = open_socket(server)
            s.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            slow.append(s)
        time.sleep(0.5)
        with httpx.Client(base_url=server.url, timeout=15) as client:
            r = client.post("/embed", json={"inputs": ["a", "b"]})
            assert r.status_code == 200, r.text
        assert all(closed_within(s, READ_TIMEOUT + 5) for s in slow[:1])
    finally:
        for s in slow:
            s.close()


def test_tokenize_amplification_is_refused(embedder):
    folder, server = embedder
    with httpx.Client(base_url=server.url, timeout=60) as client:
        r = client.post("/tokenize", json={"inputs": ["a " * 60000] * 16})
        assert r.status_code == 422 and "/tokenize answers" in r.json()["error"], r.text[:300]
        assert client.post("/tokenize", json={"inputs": "fine"}).status_code == 200


def test_deeply_nested_json_is_one_line_422(embedder):
    folder, server = embedder
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for depth in (5000, 200000):
            r = client.post("/embed", content=b"[" * depth + b"]" * depth, headers={"content-type": "application/json"})
            assert r.status_code == 422 and r.json()["error"] == "the body's JSON is nested too deeply", r.text[:300]
    assert not any("RecursionError" in line or "Traceback" in line for line in server.lines)


def test_default_prompt_is_counted_and_checked(embedder):
    from minibert.pipelines import pipeline

    folder, server = embedder
    pipe = pipeline("feature-extraction", model=folder)
    prompt_tokens = len(pipe.tokenizer(PROMPTS["query"] + "hello world")["input_ids"])
    with httpx.Client(base_url=server.url, timeout=60) as client:
        r = client.post("/v1/embeddings", json={"input": "hello world"})
        assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == prompt_tokens, r.text
        words = EMBED_MAX_SEQ - prompt_tokens + 3  # fits without the prompt, not with it
        long = " ".join(["word"] * words)
        assert len(pipe.tokenizer(long)["input_ids"]) <= EMBED_MAX_SEQ
        r = client.post("/embed", json={"inputs": long})
        assert r.status_code in (413, 422) and "tokens long" in r.json()["error"], r.text
        r2 = client.post("/embed", json={"inputs": long, "prompt_name": "query"})
        assert r2.status_code == r.status_code


@pytest.mark.slow
def test_sigterm_with_a_slow_body_open_exits(tmp_path):
    folder = tiny_checkpoint(tmp_path / "cls", "sequence-classification", num_labels=2)
    server = Server("--model", folder, "--read-timeout", str(READ_TIMEOUT)).wait_ready()
    s = open_socket(server)
    s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    time.sleep(0.3)
    start = time.monotonic()
    code = server.stop(timeout=45)
    assert time.monotonic() - start < 40
    assert code == 0
    s.close()


@pytest.mark.slow
def test_a_huge_rerank_query_is_cut_once(tmp_path):
    from minibert.pipelines import pipeline

    folder = tiny_checkpoint(tmp_path / "cross", "sequence-classification", num_labels=1)
    server = Server("--model", folder).wait_ready()
    try:
        query = "what is the capital of france " * 30000  # 900 kB
        texts = ["Paris is the capital of France.", "The match went to extra time."]
        pipe = pipeline("text-classification", model=folder)
        want = [r["score"] for r in pipe([{"text": query, "text_pair": t} for t in texts], function_to_apply="sigmoid",
                                         truncation=True)]
        with httpx.Client(base_url=server.url, timeout=120) as client:
            r = client.post("/rerank", json={"query": query, "texts": texts, "truncate": True})
            assert r.status_code == 200, r.text
            got = {x["index"]: x["score"] for x in r.json()}
            assert all(abs(got[i] - want[i]) <= 1e-5 for i in range(2)), (got, want)
            for empty in ("", "   "):
                r = client.post("/rerank", json={"query": empty, "texts": ["a", "b"]})
                assert r.status_code == 400 and "`query` cannot be empty" in r.json()["error"], r.text
    finally:
        server.stop()


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_impossible_max_wait_is_refused_at_start(value):
    env = {**os.environ, "PYTHONPATH": REPO}
    p = subprocess.run([sys.executable, "-m", "minibert", "serve", "--port", "0", "--max-wait-ms", value],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode != 0 and "--max-wait-ms must be between 0 and" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def raw_exchange(server, data: bytes, wait: float = 3.0) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it or `wait` seconds pass."""
    s = open_socket(server)
    s.sendall(data)
    s.settimeout(wait)
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return got


def test_requests_must_say_they_are_json(embedder):
    folder, server = embedder
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for headers in ({"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}, {}):
            r = client.post("/embed", content=b'{"inputs": "x"}', headers=headers)
            assert r.status_code == 415 and "Content-Type: application/json" in r.json()["error"], (headers, r.text)
        r = client.post("/embed", content=b'{"inputs": "x"}', headers={"content-type": "application/json; charset=utf-8"})
        assert r.status_code == 200


def test_a_trailing_slash_never_redirects_to_the_clients_host(embedder):
    folder, server = embedder
    with httpx.Client(base_url=server.url, timeout=60, follow_redirects=False) as client:
        r = client.post("/embed/", json={"inputs": "x"}, headers={"host": "evil.example"})
        assert r.status_code == 404 and "location" not in r.headers


def test_content_length_with_chunked_is_not_a_second_request(embedder):
    folder, server = embedder
    body = b'{"inputs": "x"}'
    smuggled = b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"inputs\": \"yy\"}"
    data = (b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) + smuggled)
    got = raw_exchange(server, data)
    assert got.count(b"HTTP/1.1 ") <= 1, got[:500]


@pytest.mark.parametrize("key", [""])
def test_an_empty_api_key_is_refused_at_start(key):
    env = {**os.environ, "PYTHONPATH": REPO}
    p = subprocess.run([sys.executable, "-m", "minibert", "serve", "--port", "0", "--api-key", key],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode != 0 and "--api-key is empty" in p.stderr, p.stderr
