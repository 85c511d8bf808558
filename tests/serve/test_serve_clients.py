"""`minibert serve` as a drop-in for TEI and OpenAI, proven with the real client libraries people point at a
TEI server (huggingface_hub's InferenceClient, the openai SDK) against a real server subprocess; every
vector and score compared with minibert's own pipeline (<= 1e-5), and each TEI behaviour the clients rely on."""
from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request

import httpx
import numpy as np
import pytest
from server import API_KEY, PROMPTS, Server, sentence_transformers_folder, tiny_checkpoint

TOL = 1e-5
TEXTS = ["A man is eating food.", "Zürich café 東京 at night", "the cat sat on the mat"]
FILLER = ["padding row"] * 5  # past the XLA buckets: the open-shape graph, as the server runs batches


@pytest.fixture(autouse=True)
def online(monkeypatch):
    """huggingface_hub refuses every URL under HF_HUB_OFFLINE, which the suite sets; these clients talk to
    loopback only."""
    import huggingface_hub.constants
    from huggingface_hub.utils import reset_sessions

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    reset_sessions()  # a session made offline earlier in this process is kept per thread
    yield
    monkeypatch.undo()
    reset_sessions()


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    """A sentence-transformers folder with a Normalize module and prompts, served with a name and a key."""
    folder = sentence_transformers_folder(tmp_path_factory.mktemp("embedder_normalize"))
    with open(os.path.join(folder, "modules.json")) as f:
        modules = json.load(f)
    modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    with open(os.path.join(folder, "modules.json"), "w") as f:
        json.dump(modules, f)
    os.makedirs(os.path.join(folder, "2_Normalize"), exist_ok=True)
    server = Server("--model", folder, "--served-model-name", "tiny-embedder", "--api-key", API_KEY,
                    "--payload-limit", "100000").wait_ready()
    yield folder, server
    server.stop()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    folder = tiny_checkpoint(tmp_path_factory.mktemp("classifier"), "sequence-classification", num_labels=2,
                             id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    server = Server("--model", folder).wait_ready()
    yield folder, server
    server.stop()


@pytest.fixture(scope="module")
def pipe(embedder):
    from minibert.pipelines import pipeline

    return pipeline("feature-extraction", model=embedder[0])


def reference(pipe, texts, **options):
    """The pipeline's vectors for `texts`, as the server computes them (the folder's modules, no Normalize
    module unless asked, TEI's normalize at the end)."""
    options = {"pooling": "auto", "normalize_module": False, "normalize": True, **options}
    return np.asarray(pipe.results_for(list(texts) + FILLER, **options)[:len(texts)])


def keyed(server):
    return httpx.Client(base_url=server.url, timeout=120, headers={"authorization": f"Bearer {API_KEY}"})


def close(got, want, tol=TOL):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.abs(got - want).max() <= tol, np.abs(got - want).max()


# -- huggingface_hub's InferenceClient ----------------------------------------------------------------
@pytest.mark.parametrize("where", ["root", "/embed"])
def test_inference_client_feature_extraction(embedder, pipe, where):
    from huggingface_hub import InferenceClient

    folder, server = embedder
    url = server.url if where == "root" else server.url + "/embed"
    client = InferenceClient(model=url, token=API_KEY)
    text = TEXTS[1]
    close(client.feature_extraction(text)[0], reference(pipe, [text], prompt="")[0])
    raw = client.feature_extraction(text, normalize=False)[0]
    assert np.linalg.norm(raw) > 1.5  # the pooled vector itself: no Normalize module
    close(raw, reference(pipe, [text], prompt="", normalize=False)[0])
    close(client.feature_extraction(text, prompt_name="query")[0], reference(pipe, [text], prompt=PROMPTS["query"])[0])
    long = " ".join(["word"] * 80) + " the very end"
    left = client.feature_extraction(long, truncate=True, truncation_direction="Left")[0]
    close(left, reference(pipe, [long], prompt="", truncation_side="left", max_length=48)[0])
    right = client.feature_extraction(long, truncate=True, truncation_direction="Right")[0]
    close(right, reference(pipe, [long], prompt="", max_length=48)[0])
    assert np.abs(left - right).max() > 1e-3


def test_inference_client_sentence_similarity(embedder, pipe):
    from huggingface_hub import InferenceClient

    folder, server = embedder
    got = InferenceClient(model=server.url + "/similarity", token=API_KEY).sentence_similarity(TEXTS[0], TEXTS[1:])
    vecs = reference(pipe, TEXTS, prompt="")
    close(got, [float(vecs[0] @ v) for v in vecs[1:]])


@pytest.mark.slow  # a second server: the default suite proves the root route on the embedder
def test_inference_client_text_classification_at_the_root(classifier):
    from huggingface_hub import InferenceClient

    from minibert.pipelines import pipeline

    folder, server = classifier
    want = pipeline("text-classification", model=folder)(["a gripping, funny film"] + FILLER, top_k=None)[0]
    got = InferenceClient(model=server.url).text_classification("a gripping, funny film")
    # TEI answers one text with [{label, score}, ...]; this client reads a nested list and keeps the best
    got = got if isinstance(got, list) else [got]
    assert [g.label for g in got] == [w["label"] for w in want][:len(got)]
    close([g.score for g in got], [w["score"] for w in want][:len(got)])


# -- the openai SDK ------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", ["/v1", ""])
@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_openai_embeddings(embedder, pipe, suffix, encoding):
    import openai

    folder, server = embedder
    client = openai.OpenAI(base_url=server.url + suffix, api_key=API_KEY)
    r = client.embeddings.create(input=TEXTS, model="anything", encoding_format=encoding)
    assert r.model == "tiny-embedder"
    got = [d.embedding for d in r.data]
    if encoding == "base64" and isinstance(got[0], str):
        got = [np.frombuffer(base64.b64decode(g), "<f4") for g in got]
    close(got, reference(pipe, TEXTS, prompt=""))
    cut = client.embeddings.create(input=TEXTS[0], model="m", dimensions=8, encoding_format=encoding).data[0].embedding
    if isinstance(cut, str):
        cut = np.frombuffer(base64.b64decode(cut), "<f4")
    close(cut, reference(pipe, TEXTS[:1], prompt="", truncate_dim=8)[0])


def test_openai_embeddings_of_token_ids(embedder, pipe):
    import openai

    folder, server = embedder
    ids = [pipe.tokenizer(t)["input_ids"] for t in TEXTS[:2]]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY)
    got = [d.embedding for d in client.embeddings.create(input=ids, model="m", encoding_format="float").data]
    close(got, reference(pipe, TEXTS[:2], prompt=""))  # the ids of the texts: their vectors
    with keyed(server) as c:
        one = c.post("/embed", json={"inputs": ids[0]}).json()
        close(one, reference(pipe, TEXTS[:1], prompt=""))


def test_openai_errors_have_openais_shape(embedder):
    import openai

    folder, server = embedder
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(input=[], model="m")
    with keyed(server) as c:
        body = c.post("/v1/embeddings", json={"input": "x", "dimensions": 10_000}).json()
        assert set(body["error"]) == {"message", "type", "code"} and body["error"]["code"] == 422, body


# -- TEI's behaviours, route by route -----------------------------------------------------------------
def test_info_answers_every_field_of_teis_info(embedder):
    folder, server = embedder
    with keyed(server) as c:
        info = c.get("/info").json()
    tei = {"model_id", "model_sha", "model_dtype", "served_model_name", "model_type", "max_concurrent_requests",
           "max_input_length", "max_batch_tokens", "max_batch_requests", "max_client_batch_size", "auto_truncate",
           "tokenization_workers", "version", "sha", "docker_label"}
    assert tei <= set(info), tei - set(info)
    assert info["served_model_name"] == "tiny-embedder" and "embedding" in info["model_type"]


def test_tokenize_offsets_are_utf8_bytes(embedder, pipe):
    folder, server = embedder
    text = "Zürich café 東京"
    with keyed(server) as c:
        tokens = c.post("/tokenize", json={"inputs": text}).json()[0]
    raw = text.encode("utf-8")
    real = [t for t in tokens if not t["special"]]
    assert real
    for t in real:  # each token's text is the input's bytes at its offsets
        assert raw[t["start"]:t["stop"]].decode("utf-8") == t["text"], t
    assert real[-1]["stop"] == len(raw) == 20


def test_decode_and_embed_all(embedder, pipe):
    folder, server = embedder
    ids = pipe.tokenizer("hello world")["input_ids"]
    with keyed(server) as c:
        assert c.post("/decode", json={"ids": ids}).json() == ["hello world"]
        assert c.post("/decode", json={"ids": [ids, ids], "skip_special_tokens": False}).json()[0].startswith("[CLS]")
        got = c.post("/embed_all", json={"inputs": ["hello world"]}).json()
    want = pipe.results_for(["hello world"] + FILLER, pooling="none", prompt="", return_tensors=True)[0][0]
    close(got[0], want, 1e-4)


def test_unknown_fields_are_ignored_and_nested_options_read(embedder, pipe):
    folder, server = embedder
    with keyed(server) as c:
        r = c.post("/embed", json={"inputs": TEXTS[0], "encoding_format": "float", "whatever": 1})
        assert r.status_code == 200
        close(r.json()[0], reference(pipe, TEXTS[:1], prompt="")[0])
        nested = c.post("/embed", json={"inputs": TEXTS[0], "parameters": {"normalize": False}}).json()[0]
        close(nested, reference(pipe, TEXTS[:1], prompt="", normalize=False)[0])


def test_empty_text_unknown_prompt_and_validation_statuses(embedder):
    folder, server = embedder
    with keyed(server) as c:
        r = c.post("/embed", json={"inputs": ""})
        assert r.status_code == 400 and r.json()["error_type"] == "Empty"
        r = c.post("/embed", json={"inputs": "x", "prompt_name": "nope"})
        prompts = c.get("/info").json()["prompts"]
        assert r.status_code == 422 and r.json()["error"].endswith(f"Available prompts: {list(prompts)}"), r.text
        r = c.post("/embed", json={"inputs": ["x"] * 33})
        assert r.status_code == 422 and r.json()["error_type"] == "Validation"


def test_timing_headers_open_routes_and_invocations(embedder):
    folder, server = embedder
    with httpx.Client(base_url=server.url, timeout=60) as anonymous:
        for path in ("/", "/health", "/ping", "/metrics"):
            assert anonymous.get(path).status_code == 200, path
        assert anonymous.post("/embed", json={"inputs": "x"}).status_code == 401
        assert anonymous.get("/info").status_code == 401
    with keyed(server) as c:
        r = c.post("/invocations", json={"inputs": "x"})
        assert r.status_code == 200 and len(r.json()[0]) == 32
        for name in ("x-compute-type", "x-compute-time", "x-compute-characters", "x-compute-tokens", "x-total-time",
                     "x-tokenization-time", "x-queue-time", "x-inference-time"):
            assert name in r.headers, name
        assert int(r.headers["x-compute-characters"]) == 1


def test_an_oversized_body_is_read_so_the_client_sees_the_413(embedder):
    folder, server = embedder
    body = json.dumps({"inputs": "a" * 3_000_000}).encode()  # 30 times the payload limit of this server
    req = urllib.request.Request(server.url + "/embed", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=60)
    assert e.value.code == 413 and "--payload-limit" in json.loads(e.value.read())["error"]


@pytest.mark.slow  # the embedder's left truncation runs in the default suite
def test_left_truncation_on_predict_and_rerank(classifier):
    from minibert.pipelines import pipeline

    folder, server = classifier
    long = " ".join(["dull"] * 80) + " but a wonderful ending"
    pipe = pipeline("text-classification", model=folder)
    want = pipe([long] + FILLER, top_k=None, truncation_side="left")[0]
    with httpx.Client(base_url=server.url, timeout=60) as c:
        got = c.post("/predict", json={"inputs": long, "truncate": True, "truncation_direction": "left"}).json()
        assert [g["label"] for g in got] == [w["label"] for w in want]
        close([g["score"] for g in got], [w["score"] for w in want])
        right = c.post("/predict", json={"inputs": long, "truncate": True, "truncation_direction": "Right"}).json()
        assert abs(right[0]["score"] - got[0]["score"]) > 1e-6 or right[0]["label"] != got[0]["label"]


def test_the_bearer_scheme_is_case_insensitive(embedder):
    folder, server = embedder
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for scheme in ("Bearer", "bearer", "BEARER"):
            r = client.post("/embed", json={"inputs": "x"}, headers={"authorization": f"{scheme} {API_KEY}"})
            assert r.status_code == 200, (scheme, r.text)
        assert client.post("/embed", json={"inputs": "x"}, headers={"authorization": "Basic " + API_KEY}).status_code == 401
        assert client.post("/embed", json={"inputs": "x"}, headers={"authorization": "bearer wrong"}).status_code == 401
