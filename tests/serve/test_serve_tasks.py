"""`minibert serve` for the tasks without a TEI route: one route each (the task's `minibert` verb), taking the
pipeline's inputs and options, answering with the task's records. One server per task: slow-marked."""
from __future__ import annotations

import httpx
import pytest
from server import Server, tiny_checkpoint

from minibert.pipelines import TASKS

TOL = 1e-6
NER = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
NLI = {0: "entailment", 1: "neutral", 2: "contradiction"}
CASES = {
    "token-classification": ("token-classification", dict(num_labels=5, id2label=NER),
                             ["Sarah lives in Paris", "John met Anna in London today"], {"aggregation_strategy": "simple"}),
    "question-answering": ("question-answering", {},
                           [{"question": "Where does Sarah live?", "context": "Sarah lives in Paris with her dog."},
                            {"question": "Who?", "context": "John met Anna in London today."}], {"top_k": 2}),
    "fill-mask": ("masked-lm", {}, ["Paris is the [MASK] of France.", "A [MASK] film."], {"top_k": 3}),
    "zero-shot-classification": ("sequence-classification", dict(num_labels=3, id2label=NLI),
                                 ["a gripping, funny film", "the match went to extra time"],
                                 {"candidate_labels": ["cinema", "sport", "politics"]}),
}


def same(got, want, where="result"):
    """Equal JSON, floats within TOL."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: {got} vs {want}"
        for k in want:
            same(got[k], want[k], f"{where}[{k}]")
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got} vs {want}"
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) or type(want).__name__.startswith("float"):
        assert abs(got - float(want)) <= TOL, f"{where}: {got} vs {want}"
    else:
        assert got == want, f"{where}: {got} vs {want}"


@pytest.mark.slow
@pytest.mark.parametrize("task", list(CASES))
def test_task_route_gives_the_pipelines_records(task, tmp_path):
    from minibert.pipelines import pipeline

    head, config, inputs, params = CASES[task]
    folder = tiny_checkpoint(tmp_path / "model", head, **config)
    server = Server("--model", folder, "--task", task)
    try:
        pipe = pipeline(task, model=folder)
        spec = TASKS[task]
        with httpx.Client(base_url=server.wait_ready().url, timeout=120) as client:
            route = f"/{spec.cli_verb}"
            filler = [inputs[0]] * 5  # past the XLA buckets: the open-shape graph, as the server runs
            want = [spec.record(r, params) for r in pipe.results_for(inputs + filler, **params)[:len(inputs)]]
            same(client.post(route, json={"inputs": inputs, "parameters": params}).json(), want)
            same(client.post(route, json={"inputs": inputs[1], "parameters": params}).json(), want[1])
            r = client.post(route, json={"inputs": inputs, "parameters": {"no_such_option": 1}})
            assert r.status_code == 422 and "no_such_option" in r.json()["error"]
            r = client.post(route, json={"inputs": [3], "parameters": params})
            assert r.status_code == 422 and "input 0" in r.json()["error"]
            assert client.post("/predict", json={"inputs": "x"}).status_code == 400
    finally:
        assert server.stop() == 0


def test_rerank_task_answers_teis_rerank_route(tmp_path):
    """`--task rerank` serves TEI's /rerank with the rerank pipeline's scores; no task route shadows it."""
    from minibert.pipelines import pipeline

    folder = tiny_checkpoint(tmp_path / "cross", "sequence-classification", num_labels=1)
    server = Server("--model", folder, "--task", "rerank")
    try:
        texts = ["Paris is the capital of France.", "The match went to extra time.", "Berlin is in Germany."]
        pipe = pipeline("rerank", model=folder)
        want = [r["score"] for r in pipe(texts + [texts[0]] * 5, query="What is the capital of France?")][:3]
        with httpx.Client(base_url=server.wait_ready().url, timeout=120) as client:
            r = client.post("/rerank", json={"query": "What is the capital of France?", "texts": texts})
            assert r.status_code == 200, r.text
            got = {x["index"]: x["score"] for x in r.json()}
            assert sorted(got) == [0, 1, 2]
            for i, score in enumerate(want):
                assert abs(got[i] - score) <= 1e-5, (got, want)
            assert [x["index"] for x in r.json()] == sorted(range(3), key=lambda i: -want[i])
    finally:
        assert server.stop() == 0
