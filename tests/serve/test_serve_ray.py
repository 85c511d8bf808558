"""`minibert serve --ray`: the same routes and JSON from two Ray Serve replicas (slow: Ray's start-up)."""
from __future__ import annotations

import socket

import httpx
import pytest
from server import Server, tiny_checkpoint
from server import CONCURRENT
from test_serve import assert_answers, assert_labels, expected, ranked, send_all, workload


@pytest.mark.slow
def test_two_replicas_answer_as_the_pipeline(tmp_path):
    from minibert.pipelines import pipeline

    folder = tiny_checkpoint(tmp_path / "model", "sequence-classification", num_labels=1)
    with socket.socket() as s:  # Ray Serve's proxy needs a port named in advance
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Server("--model", folder, "--ray", "--replicas", "2", "--port", str(port))
    try:
        pipe = pipeline("text-classification", model=folder)
        server.wait_ready()
        assert server.url == f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=server.url, timeout=300) as client:
            r = client.post("/predict", json={"inputs": ["is it good?", "a gripping, funny film"]})
            assert_labels(r.json(), ranked(pipe, [("is it good?", "a gripping, funny film")])[0])
            assert client.post("/rerank", json={"query": "q", "texts": []}).status_code == 400
        requests = workload(200, seed=4)
        outcomes = send_all(server.url, requests, CONCURRENT)
        assert sorted(i for i, _, _ in outcomes) == list(range(len(requests)))
        assert {status for _, status, _ in outcomes} == {200}
        assert_answers(outcomes, expected(pipe, requests))
    finally:
        assert server.stop(timeout=180) == 0
