"""The served model: its pipeline, what each route asks of it, and the warm-up.

`embed` and `rerank` are the two places that decide how sentence embeddings and cross-encoder scores
are made; both read as sentence-transformers defines them, on minibert's pipelines: the embeddings as the
feature-extraction pipeline makes them from the folder's sentence-transformers modules (pooling, Dense,
Normalize, prompts, max_seq_length), a one-label cross-encoder's logit through a sigmoid.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ..pipelines import TASKS, get_task

# TEI's error types and their HTTP statuses: the core raises the type, the HTTP layer (`app.py`) answers
# with the status.
STATUS = {"Validation": 422, "Unprocessable": 422, "Empty": 400, "Overloaded": 429, "Unauthorized": 401,
          "NotFound": 404, "MethodNotAllowed": 405, "Backend": 424, "Unhealthy": 503, "UnsupportedMediaType": 415}


class ServeError(Exception):
    """A request the served model refuses: its message, TEI's error type and the status it maps to."""

    def __init__(self, message: str, error_type: str = "Unprocessable", status: int | None = None):
        super().__init__(message)
        self.error_type, self.status = error_type, status or STATUS[error_type]


TEI_TASKS = ("text-classification", "feature-extraction", "rerank")  # served by TEI's routes; the others by their verb


def detect_task(folder: str) -> str:
    """The task a checkpoint folder's head serves: the first task of the task table whose model class is the
    head its config's `architectures` names (a sequence classifier: text-classification), else the bare
    encoder's."""
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            architectures = json.load(f).get("architectures") or []
    except (OSError, ValueError):
        return "feature-extraction"
    for arch in architectures if isinstance(architectures, list) else []:
        for task in TASKS.values():
            head = task.model_class.removeprefix("AutoModel")  # "ForSequenceClassification"; "" for the bare model
            if head and isinstance(arch, str) and arch.endswith(head):
                return task.name
    return "feature-extraction"


class Served:
    def __init__(self, pipe, task: str, model_id: str, folder: str, served_model_name: str | None = None):
        self.pipe, self.task, self.model_id, self.folder = pipe, get_task(task), model_id, folder
        self.served_model_name = served_model_name or model_id  # what /info and /v1/embeddings call the model
        config = pipe.model.config
        self.max_input_length = pipe.max_input_tokens
        # The folder's sentence-transformers modules, as the feature-extraction pipeline read them (None: mean pooling).
        sentence = getattr(pipe, "sentence", None) if self.task.name == "feature-extraction" else None
        self.dimension = sentence.dimension if sentence else config.hidden_size
        self.prompts = dict(sentence.prompts) if sentence else {}
        self.default_prompt_name = sentence.default_prompt_name if sentence else None
        self.pooling = "+".join(sentence.pooling.modes) if sentence else "mean"

    # -- which routes --------------------------------------------------------------------------
    def task_routes(self) -> dict[str, str]:
        """route name (the task's `minibert` verb) -> task, for the tasks TEI's routes do not cover."""
        return {t.cli_verb: t.name for t in TASKS.values() if t.name not in TEI_TASKS}

    def require(self, task: str, route: str) -> None:
        if self.task.name != task:
            raise ServeError(f"{route} needs a {task} model; this server runs {self.task.name} ({self.model_id}): "
                           f"use {self.route_hint()}", "Validation", 400)

    def is_reranker(self) -> bool:
        """TEI's rule: a one-label classifier is a reranker."""
        return self.task.name == "rerank" or (self.task.name == "text-classification"
                                              and self.pipe.model.config.num_labels == 1)

    def require_reranker(self) -> None:
        if self.task.name == "rerank":  # the rerank pipeline checks its one label itself
            return
        self.require("text-classification", "/rerank")
        if self.pipe.model.config.num_labels != 1:
            raise ServeError(f"/rerank needs a cross-encoder (one output label); {self.model_id} has "
                           f"{self.pipe.model.config.num_labels} labels: use /predict", "Validation", 400)

    def route_hint(self) -> str:
        if self.task.name == "feature-extraction":
            return "/embed or /v1/embeddings"
        if self.task.name == "text-classification":
            return "/predict" + (" or /rerank" if self.pipe.model.config.num_labels == 1 else "")
        if self.task.name == "rerank":
            return "/rerank"
        return f"/{self.task.cli_verb}"

    # -- tokens --------------------------------------------------------------------------------
    def count_tokens(self, items: list) -> list[int]:
        """Tokens per input (a text, a (text, pair) tuple, or token ids), special tokens included, untruncated."""
        texts = [x for x in items if not isinstance(x, list)]
        counts = iter([len(e.ids) for e in self.pipe.tokenizer(texts, truncation=False).encodings] if texts else [])
        return [len(x) if isinstance(x, list) else next(counts) for x in items]

    def tokenize(self, texts: list[str], add_special_tokens: bool, max_tokens: int) -> list[list[dict]]:
        """TEI's tokens: id, text (the input's own characters; the token itself for special tokens),
        special, start and stop (character offsets; null for special tokens). More than `max_tokens` in all
        is refused before the answer is built: each token costs about 80 bytes of JSON."""
        encodings = self.pipe.tokenizer(texts, add_special_tokens=add_special_tokens).encodings
        total = sum(len(e.ids) for e in encodings)
        if total > max_tokens:
            raise ServeError(f"the inputs are {total} tokens, more than the {max_tokens} /tokenize answers per request "
                           "(--max-client-batch-size times the model's length)", "Validation")
        out = []
        for text, e in zip(texts, encodings):
            # TEI's start and stop are UTF-8 byte offsets; the tokenizer's are character offsets.
            byte_at = _byte_offsets(text)
            tokens = []
            for ident, token, (start, stop), special in zip(e.ids, e.tokens, e.offsets, e.special_tokens_mask):
                if special:
                    tokens.append({"id": ident, "text": token, "special": True, "start": None, "stop": None})
                else:
                    tokens.append({"id": ident, "text": text[start:stop], "special": False,
                                   "start": byte_at[start], "stop": byte_at[stop]})
            out.append(tokens)
        return out

    def decode(self, ids: list[list[int]], skip_special_tokens: bool) -> list[str]:
        vocab = self.pipe.model.config.vocab_size
        for i, row in enumerate(ids):
            bad = next((t for t in row if not 0 <= t < vocab), None)
            if bad is not None:
                raise ServeError(f"`ids`[{i}]: token id {bad} is outside the vocabulary (0 to {vocab - 1})")
        return self.pipe.tokenizer.batch_decode(ids, skip_special_tokens=skip_special_tokens)

    def cut_to_length(self, text: str) -> str:
        """`text` up to the end of its token number `max_input_length`: what a pair with it can keep of it, so a
        long rerank query is tokenized whole once, not once per document."""
        e = self.pipe.tokenizer(text, add_special_tokens=False).encodings[0]
        return text if len(e.ids) <= self.max_input_length else text[:e.offsets[self.max_input_length - 1][1]]

    def prompt(self, prompt_name: str | None) -> str | None:
        """The named prompt's text; for no name, the folder's default prompt (None if it has none), so that the
        length check and the token counts see the text the model reads."""
        if prompt_name is None:
            return self.prompts[self.default_prompt_name] if self.default_prompt_name else None
        if prompt_name not in self.prompts:
            known = (", ".join(repr(p) for p in self.prompts)
                     or "none (the folder's config_sentence_transformers.json has no prompts)")
            # TEI's wording: its clients (tei-client's prompt_names) read the list after "Available prompts: "
            raise ServeError(f"prompt_name={prompt_name!r} is not one of this model's prompts ({known}). "
                           f"Available prompts: {list(self.prompts)}")
        return self.prompts[prompt_name]

    def with_prompt(self, texts: list[str], prompt_name: str | None) -> list[str]:
        """sentence-transformers' prompts: the named prompt's text put before every input."""
        prompt = self.prompt(prompt_name)
        return texts if prompt is None else [prompt + t for t in texts]

    # -- the model calls (on the model thread) -----------------------------------------------------
    def embed(self, texts: list, normalize: bool, truncate: bool, dimensions: int | None,
              prompt: str | None = None, side: str = "right") -> list:
        """Sentence embeddings as TEI gives them: the folder's pooling and Dense modules (a folder without them:
        mean pooling), cut to `dimensions` (Matryoshka), then L2-normalised only if `normalize` (TEI never
        applies the folder's Normalize module by itself: `normalize=false` is the raw pooled vector). The
        prompt goes through the pipeline, which leaves it out of the pooling where the folder says so; token
        ids (lists) are embedded as given."""
        return self.pipe.results_for(texts, pooling="auto", normalize=bool(normalize), normalize_module=False,
                                     truncate_dim=dimensions, prompt=prompt,
                                     truncation=truncate, truncation_side=side, max_length=self.max_input_length)

    def embed_all(self, texts: list, truncate: bool, prompt: str | None = None, side: str = "right") -> list:
        """Every token's vector of the last hidden state, special tokens included: (tokens, hidden) per input."""
        return [np.asarray(r[0], np.float32) for r in
                self.pipe.results_for(texts, pooling="none", prompt=prompt,
                                      truncation=truncate, truncation_side=side, max_length=self.max_input_length,
                                      return_tensors=True)]

    def rerank(self, pairs: list[tuple[str, str]], raw: bool, truncate: bool, side: str = "right") -> list[float]:
        """A cross-encoder's scores as sentence-transformers' CrossEncoder.predict gives them: the one
        logit through a sigmoid, or the logit itself with `raw` (served with --task rerank: through the
        folder's activation_fn, as the rerank pipeline and CrossEncoder give them)."""
        if self.task.name == "rerank":
            results = self.pipe.results_for(list(pairs), activation_fn="identity" if raw else None,
                                            max_length=self.max_input_length, truncation_side=side)
            return [r["score"] for r in results]
        results = self.pipe.results_for([{"text": q, "text_pair": t} for q, t in pairs], top_k=1,
                                        function_to_apply="none" if raw else "sigmoid", truncation=truncate,
                                        truncation_side=side, max_length=self.max_input_length)
        return [r[0]["score"] for r in results]

    def predict(self, items: list, raw: bool, truncate: bool, side: str = "right") -> list[list[dict]]:
        """Every label, best first, for each text or (text, pair): the pipeline's scores, or logits with `raw`."""
        inputs = [{"text": x[0], "text_pair": x[1]} if isinstance(x, tuple) else x for x in items]
        return self.pipe.results_for(inputs, top_k=None, function_to_apply="none" if raw else None,
                                     truncation=truncate, truncation_side=side, max_length=self.max_input_length)

    def check_task_inputs(self, items: list, params: dict) -> tuple[list, dict]:
        """Another task's inputs and options, checked by its pipeline before anything is queued."""
        if "batch_size" in params:
            raise ValueError("`parameters` cannot set batch_size: the server batches requests itself")
        self.pipe.check_options(**params)
        return [self.pipe.check_input(x, i) for i, x in enumerate(items)], params

    def task_records(self, items: list, params: dict) -> list[dict]:
        return [self.task.record(r, params) for r in self.pipe.results_for(items, **params)]

    # -- start-up ----------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """The pipeline's warm-up (every input shape its forwards meet), before the first request."""
        self.pipe.warm_up(self.max_input_length)

    def info(self) -> dict:
        config = self.pipe.model.config
        if self.task.name == "feature-extraction":
            model_type = {"embedding": {"pooling": self.pooling}}
        elif self.task.name == "text-classification":
            labels = {"id2label": {str(k): v for k, v in config.id2label.items()},
                      "label2id": {v: k for k, v in config.id2label.items()}}
            model_type = {"reranker" if config.num_labels == 1 else "classifier": labels}
        else:
            model_type = {self.task.name: {}}
        return {"model_id": self.model_id, "model_sha": None, "model_dtype": "float32", "model_type": model_type,
                "served_model_name": self.served_model_name, "task": self.task.name, "prompts": self.prompts or None,
                "engine": self.pipe.model.engine}  # the default differs per CPU kind


def _byte_offsets(text: str) -> list[int]:
    """For each character offset 0..len(text), the UTF-8 byte offset where that character starts."""
    out, at = [0], 0
    for ch in text:
        at += len(ch.encode("utf-8", "surrogatepass"))
        out.append(at)
    return out
