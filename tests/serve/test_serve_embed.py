"""`minibert serve` on a sentence-transformers folder: /embed, /v1/embeddings and /tokenize's prompts,
against the pipeline and against sentence-transformers itself."""
from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from server import EMBED_MAX_SEQ as MAX_SEQ
from server import API_KEY, PROMPTS

TOL = 1e-6
FILLER = ["filler"] * 5  # past the XLA buckets: expectations run the open-shape graph, as the server does


@pytest.fixture(scope="module")
def folder(launched):
    return launched["embedder"][0]


@pytest.fixture(scope="module")
def served(launched):
    from minibert.pipelines import pipeline

    folder, server = launched["embedder"]
    pipe = pipeline("feature-extraction", model=folder)  # while the server starts
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=server.wait_ready().url, timeout=120, headers=headers) as client:
        yield client, pipe
    assert server.stop() == 0


def embeddings(pipe, texts, normalize=True, **options):
    return pipe.results_for(texts + FILLER, pooling="mean", normalize=normalize, **options)[:len(texts)]


def close(got, want, tol=TOL):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape and np.abs(got - want).max() <= tol, np.abs(got - want).max()


def test_embed_as_the_pipeline(served):
    client, pipe = served
    texts = ["a gripping, funny film", "dull", "an hour too long and not a minute of it earned"]
    close(client.post("/embed", json={"inputs": texts}).json(), embeddings(pipe, texts))
    close(client.post("/embed", json={"inputs": "dull"}).json(), embeddings(pipe, ["dull"]))
    close(client.post("/embed", json={"inputs": texts, "normalize": False}).json(), embeddings(pipe, texts, False))


def test_embed_on_the_litert_engine(launched):
    """`serve --engine litert`: /embed from the compiled model, concurrent requests included, equals the Keras
    pipeline within the float32 parity bound."""
    from concurrent.futures import ThreadPoolExecutor

    from minibert.pipelines import pipeline

    folder, server = launched["embedder-litert"]
    pipe = pipeline("feature-extraction", model=folder, engine="keras")
    texts = ["a gripping, funny film", "dull", "an hour too long and not a minute of it earned", "timing is everything"]
    want = embeddings(pipe, texts)
    with httpx.Client(base_url=server.wait_ready().url, timeout=120) as client:
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda i: client.post("/embed", json={"inputs": [texts[i % 4]]}).json()[0], range(32)))
        assert client.get("/info").json()["engine"] == "litert"
    close(got, [want[i % 4] for i in range(32)], 1e-5)
    stop_with_sigint_during_load(server, texts, want)


def stop_with_sigint_during_load(server, texts, want):
    """SIGINT (Ctrl-C) stops the server as SIGTERM does: it stops accepting, answers every request it accepted
    (each right), and exits 0; requests after it get a refused connection, not an HTTP error."""
    import signal
    import time
    from concurrent.futures import ThreadPoolExecutor

    def post(i):
        try:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                response = client.post("/embed", json={"inputs": [texts[i % 4]]})
            return i, response.status_code, response.json()
        except httpx.TransportError as e:
            return i, type(e).__name__, None

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(post, i) for i in range(400)]
        deadline = time.monotonic() + 120
        while sum(f.done() for f in futures) < 20 and time.monotonic() < deadline:  # the load is under way
            time.sleep(0.02)
        server.proc.send_signal(signal.SIGINT)
        outcomes = [f.result() for f in futures]
    assert server.proc.wait(60) == 0
    answered = [(i, body) for i, status, body in outcomes if status == 200]
    assert 20 <= len(answered) < len(outcomes)
    assert all(isinstance(status, str) for _, status, _ in outcomes if status != 200)  # refused, not an HTTP error
    close([body[0] for _, body in answered], [want[i % 4] for i, _ in answered], 1e-5)


def test_prompts_dimensions_and_sentence_transformers(served, folder):
    from sentence_transformers import SentenceTransformer

    client, pipe = served
    texts = ["what makes a film funny?", "timing"]
    got = client.post("/embed", json={"inputs": texts, "prompt_name": "query"}).json()
    close(got, embeddings(pipe, ["query: " + t for t in texts]))
    st = SentenceTransformer(folder, device="cpu")
    close(got, st.encode(texts, prompt_name="query", normalize_embeddings=True), 1e-5)  # torch: the parity tolerance
    cut = client.post("/embed", json={"inputs": texts, "dimensions": 8}).json()
    close(cut, st.encode(texts, truncate_dim=8, normalize_embeddings=True), 1e-5)
    r = client.post("/embed", json={"inputs": texts, "prompt_name": "summary"})
    assert r.status_code == 422 and "'summary'" in r.json()["error"] and "'passage'" in r.json()["error"]
    tokens = client.post("/tokenize", json={"inputs": "timing", "prompt_name": "query"}).json()[0]
    assert [t["text"] for t in tokens] == ["[CLS]", "query", ":", "timing", "[SEP]"]


def test_long_texts_refused_unless_truncated(served):
    client, pipe = served
    long = " ".join(["wonderful"] * 100)
    r = client.post("/embed", json={"inputs": ["short", long]})
    assert r.status_code == 422 and f"more than the {MAX_SEQ}" in r.json()["error"]
    got = client.post("/embed", json={"inputs": ["short", long], "truncate": True}).json()
    close(got, embeddings(pipe, ["short", long], truncation=True, max_length=MAX_SEQ))


def test_openai_embeddings(served):
    client, pipe = served
    texts = ["a gripping, funny film", "dull"]
    body = client.post("/v1/embeddings", json={"input": texts, "model": "anything"}).json()
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1]
    close([d["embedding"] for d in body["data"]], embeddings(pipe, texts))
    n_tokens = sum(len(pipe.tokenizer(t)["input_ids"]) for t in texts)
    assert body["usage"] == {"prompt_tokens": n_tokens, "total_tokens": n_tokens}
    packed = client.post("/v1/embeddings", json={"input": "dull", "encoding_format": "base64"}).json()
    vector = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), "<f4")
    close(vector[None], embeddings(pipe, ["dull"]))
    r = client.post("/v1/embeddings", json={"input": [[101, 102]]})  # token ids, as TEI embeds them
    assert r.status_code == 200 and len(r.json()["data"]) == 1
    r = client.post("/v1/embeddings", json={"input": [[101, 10**9]]})
    assert r.status_code == 422 and "outside the vocabulary" in r.json()["error"]["message"]


def test_info_and_the_wrong_routes(served):
    client, _ = served
    info = client.get("/info").json()
    # sentence-transformers gives every SentenceTransformer empty "query" and "document" prompts under the folder's
    assert info["model_type"] == {"embedding": {"pooling": "mean"}} and info["prompts"] == {"document": "", **PROMPTS}
    assert info["max_input_length"] == MAX_SEQ
    r = client.post("/predict", json={"inputs": "x"})
    assert r.status_code == 400 and "/embed or /v1/embeddings" in r.json()["error"]


def test_api_key(served):
    client, _ = served
    url = str(client.base_url)
    r = httpx.post(url + "/embed", json={"inputs": "x"})
    assert r.status_code == 401 and r.json()["error_type"] == "Unauthorized"
    r = httpx.post(url + "/embed", json={"inputs": "x"}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert httpx.get(url + "/health").status_code == 200  # probes need no key
    assert client.post("/embed", json={"inputs": "x"}).status_code == 200
