"""`minibert serve` on a sentence-transformers folder: /embed, /v1/embeddings and /tokenize's prompts,
against the pipeline and against sentence-transformers itself."""
from __future__ import annotations

import base64
import json
import os

import httpx
import numpy as np
import pytest
from server import Server, tiny_checkpoint

TOL = 1e-6
MAX_SEQ = 48  # sentence_bert_config.json's max_seq_length: shorter than the model's 64 positions
PROMPTS = {"query": "query: ", "passage": "passage: "}
FILLER = ["filler"] * 5  # past the XLA buckets: expectations run the open-shape graph, as the server does


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tiny_checkpoint(tmp_path_factory.mktemp("embedder"), "model")
    files = {"modules.json": [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                              {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}],
             "sentence_bert_config.json": {"max_seq_length": MAX_SEQ, "do_lower_case": False},
             "config_sentence_transformers.json": {"prompts": PROMPTS, "default_prompt_name": None},
             "1_Pooling/config.json": {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}}
    for name, value in files.items():
        os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
        with open(os.path.join(folder, name), "w") as f:
            json.dump(value, f)
    return folder


@pytest.fixture(scope="module")
def served(folder):
    from minibert.pipelines import pipeline

    s = Server("--model", folder)
    pipe = pipeline("feature-extraction", model=folder)
    with httpx.Client(base_url=s.wait_ready().url, timeout=120) as client:
        yield client, pipe
    s.stop()


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
    r = client.post("/embed", json={"inputs": texts, "prompt_name": "document"})
    assert r.status_code == 422 and "'query', 'passage'" in r.json()["error"]
    tokens = client.post("/tokenize", json={"inputs": "timing", "prompt_name": "query"}).json()[0]
    assert [t["text"] for t in tokens] == ["[CLS]", "query", ":", "timing", "[SEP]"]


def test_long_texts_refused_unless_truncated(served):
    client, pipe = served
    long = " ".join(["wonderful"] * 100)
    r = client.post("/embed", json={"inputs": ["short", long]})
    assert r.status_code == 413 and f"more than the {MAX_SEQ}" in r.json()["error"]
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
    r = client.post("/v1/embeddings", json={"input": [[101, 102]]})
    assert r.status_code == 422 and "token ids" in r.json()["error"]


def test_info_and_the_wrong_routes(served):
    client, _ = served
    info = client.get("/info").json()
    assert info["model_type"] == {"embedding": {"pooling": "mean"}} and info["prompts"] == PROMPTS
    assert info["max_input_length"] == MAX_SEQ
    r = client.post("/predict", json={"inputs": "x"})
    assert r.status_code == 400 and "/embed or /v1/embeddings" in r.json()["error"]
