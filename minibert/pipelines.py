"""`pipeline(task)`: text in; labels, entities, answers, filled masks or vectors out, as transformers' pipelines.

Every task is declared once, in `TASKS` at the end of this module: its name and aliases, the Auto
class that loads its checkpoints, its pipeline class, its `minibert` command, its offline default
model and what `minibert trace` shows of its head. `pipeline()`, the command line, `trace` and the
Ray entry point read that table. Importing this module does not import TensorFlow.

Inside every pipeline, inputs become rows (a text, a text pair, one window of a long text), the rows
are sorted by length and cut into batches that are each padded only to their own longest row, and
the results are put back in input order: the same results as one input at a time (padding is
masked), in fewer forwards. A pipeline object holds no per-call state, so several threads may call
it at once. An iterator input (a generator, an open file) gives a generator of results, read in
windows of up to STREAM_CHUNK inputs; inside a window each result comes out as soon as it and every
input before it are done.

Arguments, results and their rules are those of transformers 4.57 (`transformers/pipelines/*.py`);
each class names the file it follows. Scores are Python floats (transformers' token classification
returns numpy float32). Options can be given when the pipeline is built (`pipeline(..., top_k=3)`)
or per call; bad options and bad inputs raise before any model work and leave the pipeline usable.
"""
from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from . import default_model
from .tokenizer import check_text

DEFAULT_BATCH_SIZE = 64  # rows per forward; scripts/bench.py measures the choice (README, speed)
STREAM_CHUNK = 1024  # inputs read from an iterator, sorted by length and batched together, at a time


def softmax(logits: np.ndarray) -> np.ndarray:
    """Over the last axis, shifted by the row maximum so exp never overflows."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def _int_option(name: str, value, minimum: int, none_means: str | None = None):
    """An integer option checked where it enters: a clear error instead of garbage later."""
    if value is None and none_means is not None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        also = f" (or None for {none_means})" if none_means else ""
        raise TypeError(f"{name} must be an int{also}, got {type(value).__name__} {value!r}")
    if value < minimum:
        also = f"; None means {none_means}" if none_means else ""
        raise ValueError(f"{name}={value}; it must be at least {minimum}{also}")
    return int(value)


def _bool_option(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _choice(name: str, value, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name}={value!r}; use one of {', '.join(repr(c) for c in choices)}")
    return value.lower()


class Pipeline:
    """What every task shares: options, input checks, streaming, length-sorted batches.

    A task says which options it takes (`OPTIONS`, with their defaults), how it checks one input
    (`_item`), how it turns a chunk of checked inputs into results (`_run`), which model outputs it
    reads (`OUTPUTS`) and how a single input's result is returned (`_shape`).
    """

    task = ""
    OPTIONS: dict = {"batch_size": None}
    OUTPUTS: tuple[str, ...] = ()
    INPUT = "a string, a list of strings or an iterator of strings"

    def __init__(self, model, tokenizer, batch_size=None, max_length=None, device=None, **options):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = _int_option("batch_size", batch_size, 1, "the default") or DEFAULT_BATCH_SIZE
        self.max_length = _int_option("max_length", max_length, 1, "the tokenizer's model_max_length")
        self.device = _tf_device(device)
        self._check_model()
        self.options = MappingProxyType(dict(options))  # defaults for every call; never changed after this
        self._options(None)  # bad defaults fail here, not at the first call

    def _check_model(self) -> None:
        """Refuse a model this task cannot use, when the pipeline is built."""

    # -- calling ---------------------------------------------------------------------------------
    def __call__(self, inputs, **kwargs):
        """A string (or the task's single input) or a list gives the results at once. An iterator (a
        generator, an open file) is streamed, as transformers' pipelines do: a generator of results, one
        per input, computed at most STREAM_CHUNK inputs at a time, so memory stays bounded however long the input."""
        opts = self._options(kwargs)
        if isinstance(inputs, Iterator):
            return self._stream(inputs, opts)
        items, shape = self._items(inputs)
        return self._shape(list(self._run(items, opts, 0)) if items else [], shape, opts)

    def _options(self, call: dict | None) -> dict:
        """Construction defaults, then call arguments, checked; a dict the call reads (nothing is stored).

        call is None when the pipeline is built: the defaults alone are checked then.
        """
        given = {**self.options, **(call or {})}
        unknown = sorted(set(given) - set(self.OPTIONS))
        if unknown:
            raise TypeError(f"{self.task} pipeline: unknown argument(s) {', '.join(unknown)}; "
                            f"it takes {', '.join(self.OPTIONS)}")
        opts = {**self.OPTIONS, **given}
        opts["batch_size"] = _int_option("batch_size", opts["batch_size"], 1, "the pipeline's") or self.batch_size
        return self._sanitize(opts, call)

    def _sanitize(self, opts: dict, call: dict) -> dict:
        return opts

    def _items(self, inputs) -> tuple[list, str]:
        """(checked inputs, "one" or "list": how the results are returned)."""
        if isinstance(inputs, (list, tuple)):
            return [self._item(x, i) for i, x in enumerate(inputs)], "list"
        if isinstance(inputs, str):
            return [self._item(inputs, 0)], "one"
        raise TypeError(f"{self.task} pipeline: expected {self.INPUT}, got {type(inputs).__name__}")

    def _item(self, x, i: int):
        check_text(x, f"input {i}")
        return x

    def _shape(self, results: list, shape: str, opts: dict):
        return results[0] if shape == "one" else results

    def _stream(self, inputs: Iterator, opts: dict):
        # Windows start at one batch and double up to STREAM_CHUNK: the first results come after one
        # forward (`minibert classify ... | head -3` answers at once), later ones with the long
        # windows that sort by length best. Inside a window, results come as its prefix is done (_forward_rows).
        start, size = 0, min(opts["batch_size"], STREAM_CHUNK)
        while True:
            chunk = list(itertools.islice(inputs, size))
            if not chunk:
                return
            items = [self._item(x, i) for i, x in enumerate(chunk, start)]
            yield from self._run(items, opts, start)
            start, size = start + len(chunk), min(2 * size, STREAM_CHUNK)

    def _run(self, items: list, opts: dict, first: int) -> Iterator:
        """Results for checked inputs, in order, each as soon as it is done; `first` numbers the inputs in
        error messages (their place in a stream). Every check runs before the first forward."""
        raise NotImplementedError

    # -- the model -------------------------------------------------------------------------------
    def _forward_rows(self, rows: list, batch_size: int, take: Callable, first: int = 0) -> Iterator[list]:
        """Run rows through the model, shortest first, `batch_size` rows per forward, each batch padded to
        its longest row; yield, input by input in order, the list of that input's row results, as soon as
        its rows and those of every input before it have run.

        rows: (input number within the chunk, `tokenizers.Encoding` without padding) pairs, grouped by
        input (an input has one row, or one per window of a long text, or per zero-shot label).
        take(outputs, j, encoding): the row's result from a batch's outputs (numpy arrays keyed by the
        names in OUTPUTS; j is the row's place in the batch).
        """
        limit = self.model.config.max_sequence_length  # the position table, less RoBERTa's offset
        for k, enc in rows:  # before any forward: refuse what the position table cannot hold
            if len(enc.ids) > limit:
                raise ValueError(f"input {first + k} is {len(enc.ids)} tokens long, more than the {limit} this model "
                                 f"takes{self._too_long_hint}")
        order = np.argsort([len(enc.ids) for _, enc in rows], kind="stable")
        results, done = [None] * len(rows), 0  # rows[:done] have run and been yielded
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            with self.device_scope():  # around the forward only: the caller's code runs between yields
                out = self.model(self._pad([rows[i][1] for i in idx]))
            arrays = {name: getattr(out, name).numpy() for name in self.OUTPUTS}
            for j, i in enumerate(idx):
                results[i] = (take(arrays, j, rows[i][1]),)  # a 1-tuple: a result may itself be None
            end = done
            while end < len(rows) and results[end] is not None:
                end += 1
            while done < end and (end == len(rows) or rows[end][0] != rows[done][0]):
                k, group = rows[done][0], []  # the input's rows are done and so are all before it
                while done < end and rows[done][0] == k:
                    group.append(results[done][0])
                    results[done], done = None, done + 1  # yielded: its memory can go
                yield group

    _too_long_hint = "; pass truncation=True"

    def _pad(self, encodings: list) -> dict:
        """The model's inputs for a batch: (B, T) arrays, T the longest row, padding masked out."""
        B, T = len(encodings), max(len(e.ids) for e in encodings)
        ids = np.full((B, T), self.tokenizer.pad_token_id, np.int32)
        types, mask = np.zeros((B, T), np.int32), np.zeros((B, T), np.int32)
        for j, e in enumerate(encodings):
            n = len(e.ids)
            ids[j, :n], types[j, :n], mask[j, :n] = e.ids, e.type_ids, e.attention_mask
        arrays = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
        return {name: arrays[name] for name in self.tokenizer.model_input_names if name in arrays}

    def device_scope(self):
        if self.device is None:
            return nullcontext()
        from ._tensorflow import load_tensorflow_quietly

        return load_tensorflow_quietly().device(self.device)

    def _limit(self, opts: dict) -> int:
        return opts.get("max_length") or self.max_length or self.tokenizer.model_max_length


# -- text classification -------------------------------------------------------------------------
_UNSET = object()  # top_k not given: transformers' one-best "legacy" results


class TextClassificationPipeline(Pipeline):
    """Labels for texts or text pairs (transformers' `text_classification.py`).

    `pipe("text")` -> [{"label", "score"}]; `pipe(["a", "b"])` -> one {"label", "score"} per text;
    a pair `pipe({"text": premise, "text_pair": hypothesis})` -> {"label", "score"} (cross-encoders, NLI).
    `top_k=k` gives the k best labels per input, sorted, `top_k=None` all of them (then a single text
    gives that list itself). `function_to_apply`: "softmax", "sigmoid" or "none"; by default sigmoid
    for multi-label checkpoints (`problem_type: multi_label_classification`) and one-output models,
    none for regression, softmax otherwise. Texts longer than the model's limit are truncated
    (`truncation=False` makes that an error).
    """

    task = "text-classification"
    OPTIONS = {"top_k": _UNSET, "function_to_apply": None, "truncation": True, "max_length": None, "batch_size": None}
    OUTPUTS = ("logits",)
    INPUT = 'a string, a {"text": ..., "text_pair": ...} dict, a list of them or an iterator of them'

    def _sanitize(self, opts, call):
        top_k = opts["top_k"]
        # transformers' rules: a top_k given anywhere gives sorted lists; one given in this call also stops
        # a single string's result from being wrapped in a list.
        opts["legacy"] = top_k is _UNSET
        opts["wrap"] = "top_k" not in (call or {})
        if top_k is not _UNSET:
            opts["top_k"] = _int_option("top_k", top_k, 1, "all labels")
        fn = opts["function_to_apply"]
        opts["function_to_apply"] = self._default_function() if fn is None else \
            _choice("function_to_apply", fn, ("softmax", "sigmoid", "none"))
        if not isinstance(opts["truncation"], bool):
            opts["truncation"] = _choice("truncation", opts["truncation"], ("longest_first", "only_first", "only_second"))
        opts["max_length"] = _int_option("max_length", opts["max_length"], 1, "the pipeline's")
        return opts

    def _default_function(self) -> str:
        c = self.model.config
        if c.problem_type == "regression":
            return "none"
        if c.problem_type == "multi_label_classification" or c.num_labels == 1:
            return "sigmoid"
        return "softmax"

    def _items(self, inputs):
        if isinstance(inputs, dict):
            return [self._item(inputs, 0)], "dict"
        return super()._items(inputs)

    def _item(self, x, i):
        if isinstance(x, dict):
            unknown = set(x) - {"text", "text_pair"}
            if "text" not in x or unknown:
                raise ValueError(f'input {i}: a text pair is {{"text": ..., "text_pair": ...}}, got keys {sorted(x)}')
            check_text(x["text"], f'input {i} ["text"]')
            if x.get("text_pair") is None:
                return x["text"]
            check_text(x["text_pair"], f'input {i} ["text_pair"]')
            return x["text"], x["text_pair"]
        if isinstance(x, (list, tuple)):
            raise ValueError(f'input {i} is a {type(x).__name__}; to classify a text pair, send a dict '
                             '{"text": "My text", "text_pair": "My pair"}')
        check_text(x, f"input {i}", "str or a {'text', 'text_pair'} dict")
        return x

    def _shape(self, results, shape, opts):
        if shape == "one":
            return [results[0]] if opts["wrap"] else results[0]
        return results[0] if shape == "dict" else results

    def _run(self, items, opts, first):
        enc = self.tokenizer(items, truncation=opts["truncation"], max_length=self._limit(opts))
        rows = list(enumerate(enc.encodings))
        for (logits,) in self._forward_rows(rows, opts["batch_size"], lambda out, j, e: out["logits"][j], first):
            yield self._labels(logits, opts)

    def _labels(self, logits: np.ndarray, opts: dict):
        scores = {"softmax": softmax, "sigmoid": sigmoid, "none": lambda x: x}[opts["function_to_apply"]](logits)
        id2label = self.model.config.id2label
        if opts["legacy"]:
            best = int(scores.argmax())
            return {"label": id2label[best], "score": float(scores[best])}
        order = np.argsort(-scores, kind="stable")[:opts["top_k"]]  # top_k None: every label
        return [{"label": id2label[int(i)], "score": float(scores[i])} for i in order]


# -- zero-shot classification --------------------------------------------------------------------
class ZeroShotClassificationPipeline(Pipeline):
    """Labels chosen at call time, with an NLI model (transformers' `zero_shot_classification.py`).

    `pipe(text, candidate_labels=["sports", "politics"])` (or "sports, politics") -> {"sequence",
    "labels", "scores"}, labels sorted best first. Each label becomes the hypothesis
    `hypothesis_template.format(label)` for the text as premise; the entailment logits, softmaxed over
    the labels, are the scores. `multi_label=True` scores each label on its own (entailment against
    contradiction). The model's labels must include one starting with "entail".
    """

    task = "zero-shot-classification"
    OPTIONS = {"candidate_labels": None, "hypothesis_template": "This example is {}.", "multi_label": False,
               "batch_size": None}
    OUTPUTS = ("logits",)
    _too_long_hint = ""

    def __call__(self, inputs, *args, **kwargs):
        if len(args) == 1 and "candidate_labels" not in kwargs:
            kwargs["candidate_labels"] = args[0]  # pipe(text, ["a", "b"]), as transformers allows
        elif args:
            raise TypeError(f"zero-shot-classification pipeline: cannot understand the extra arguments {args!r}")
        return super().__call__(inputs, **kwargs)

    def _check_model(self):
        label2id = self.model.config.label2id
        self.entailment_id = next((i for label, i in label2id.items() if label.lower().startswith("entail")), None)
        if self.entailment_id is None:
            raise ValueError("zero-shot classification needs an NLI model whose labels include entailment; this "
                             f"model's labels are {sorted(label2id)} (config.json id2label)")

    def _sanitize(self, opts, call):
        labels = opts["candidate_labels"]
        if isinstance(labels, str):
            labels = [label.strip() for label in labels.split(",") if label.strip()]
        elif labels is None:
            if call is None:  # building the pipeline: labels come with each call
                return opts
            raise TypeError("zero-shot-classification needs candidate_labels: a list of strings or a comma-separated string")
        elif not isinstance(labels, (list, tuple)) or not all(isinstance(label, str) for label in labels):
            raise TypeError(f"candidate_labels must be a list of strings or a comma-separated string, got {labels!r}")
        if not labels:
            raise ValueError("candidate_labels is empty: give at least one label")
        opts["candidate_labels"] = list(labels)
        template = opts["hypothesis_template"]
        if not isinstance(template, str):
            raise TypeError(f"hypothesis_template must be a string with {{}} where the label goes, got {template!r}")
        try:
            filled = template.format(labels[0])
        except (IndexError, KeyError, ValueError) as e:
            raise ValueError(f"hypothesis_template {template!r} cannot be filled with a label: {e!r}") from None
        if filled == template:
            raise ValueError(f"hypothesis_template {template!r} has no {{}} where the label goes")
        opts["multi_label"] = _bool_option("multi_label", opts["multi_label"])
        return opts

    def _item(self, x, i):
        check_text(x, f"input {i}")
        if not x:
            raise ValueError(f"input {i} is an empty text: zero-shot classification needs a sequence to classify")
        return x

    def _run(self, items, opts, first):
        labels, template = opts["candidate_labels"], opts["hypothesis_template"]
        hypotheses = [template.format(label) for label in labels]
        pairs = [(text, h) for text in items for h in hypotheses]
        try:  # truncate the text, never the hypothesis
            enc = self.tokenizer(pairs, truncation="only_first", max_length=self._limit(opts))
        except ValueError:
            self._explain_too_long(items, hypotheses, opts, first)
            raise
        n = len(labels)
        rows = [(p // n, e) for p, e in enumerate(enc.encodings)]  # one row per (text, label)
        groups = self._forward_rows(rows, opts["batch_size"], lambda out, j, e: out["logits"][j], first)
        for text, logits in zip(items, groups):
            yield self._ranked(text, labels, np.stack(logits), opts)

    def _explain_too_long(self, items, hypotheses, opts, first):
        limit = self._limit(opts)
        for h, label in zip(hypotheses, opts["candidate_labels"]):
            n = len(self.tokenizer.tokenize(h)) + self.tokenizer.num_special_tokens_to_add(pair=True)
            if n >= limit:
                raise ValueError(f"the hypothesis for label {label!r} ({h!r}) takes {n} of the {limit} tokens "
                                 "the model takes, leaving no room for the text; shorten the label or the template")

    def _ranked(self, text: str, labels: list, logits: np.ndarray, opts: dict) -> dict:
        """logits: (labels, model labels) for one text."""
        entail = self.entailment_id
        if opts["multi_label"] or len(labels) == 1:
            contradiction = -1 if entail == 0 else 0  # transformers' choice of the "against" column
            scores = softmax(logits[:, [contradiction, entail]])[:, 1]
        else:
            scores = softmax(logits[:, entail])
        top = list(reversed(scores.argsort()))
        return {"sequence": text, "labels": [labels[i] for i in top], "scores": [float(scores[i]) for i in top]}


# -- feature extraction --------------------------------------------------------------------------
class FeatureExtractionPipeline(Pipeline):
    """Token vectors, or sentence embeddings (transformers' `feature_extraction.py`, plus pooling).

    Without pooling, as transformers: each text gives its last hidden state with a batch axis of one,
    shape (1, tokens, hidden), [CLS] and [SEP] included, no padding rows: nested lists of floats, or a
    numpy array with `return_tensors=True`. So `pipe("a text")` is one (1, T, hidden) result and
    `pipe(["a", "b"])` a list of them.
    `pooling="mean"` (the mean over real tokens) or `"cls"` (the [CLS] vector) gives sentence embeddings
    instead, always as numpy: (hidden,) for one text, (n_texts, hidden) for a list, one (hidden,) row
    per text from an iterator. `normalize=True` scales them to unit length, as sentence-transformers'
    all-MiniLM-L6-v2 does. Texts longer than the limit are truncated (`truncation=False`: an error).
    """

    task = "feature-extraction"
    OPTIONS = {"pooling": None, "normalize": False, "return_tensors": False, "truncation": True, "max_length": None,
               "batch_size": None}
    OUTPUTS = ("last_hidden_state",)

    def _sanitize(self, opts, call):
        if opts["pooling"] is not None:
            opts["pooling"] = _choice("pooling", opts["pooling"], ("mean", "cls"))
        opts["normalize"] = _bool_option("normalize", opts["normalize"])
        if opts["normalize"] and opts["pooling"] is None:
            raise ValueError("normalize=True scales sentence embeddings: give pooling='mean' or 'cls' too")
        opts["return_tensors"] = _bool_option("return_tensors", opts["return_tensors"])
        opts["truncation"] = _bool_option("truncation", opts["truncation"])
        opts["max_length"] = _int_option("max_length", opts["max_length"], 1, "the pipeline's")
        return opts

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def _shape(self, results, shape, opts):
        if opts["pooling"] is None or shape == "one":
            return super()._shape(results, shape, opts)
        return np.stack(results) if results else np.zeros((0, self.hidden_size), np.float32)

    def _run(self, items, opts, first):
        enc = self.tokenizer(items, truncation=opts["truncation"], max_length=self._limit(opts))

        def take(out, j, e):
            hidden = out["last_hidden_state"][j, :len(e.ids)]  # (T, C), real tokens only
            if opts["pooling"] is None:
                return hidden[None] if opts["return_tensors"] else hidden[None].tolist()  # (1, T, C)
            vec = hidden.mean(axis=0) if opts["pooling"] == "mean" else hidden[0]  # (C,)
            return vec / max(np.linalg.norm(vec), 1e-12) if opts["normalize"] else vec

        for (vector,) in self._forward_rows(list(enumerate(enc.encodings)), opts["batch_size"], take, first):
            yield vector


# -- fill-mask -----------------------------------------------------------------------------------
class FillMaskPipeline(Pipeline):
    """The likeliest tokens at each mask token (transformers' `fill_mask.py`).

    `pipe("Paris is the [MASK] of France.")` -> the top_k (default 5) {"score", "token", "token_str",
    "sequence"}, best first. A text with several masks gives one such list per mask (each scored on its
    own, the other masks left in `sequence`). A list of texts gives a list of those; a list of one text
    gives that text's result, as in transformers. `targets` limits the candidates to these words: a
    word missing from the vocabulary is replaced, with a warning, by its first word piece.
    `tokenizer_kwargs={"truncation": True}` truncates long texts (a mask cut off is then an error).
    """

    task = "fill-mask"
    OPTIONS = {"top_k": 5, "targets": None, "tokenizer_kwargs": None, "batch_size": None}
    OUTPUTS = ("logits",)
    _too_long_hint = "; pass tokenizer_kwargs={'truncation': True}"

    def _sanitize(self, opts, call):
        opts["top_k"] = _int_option("top_k", opts["top_k"], 1)
        kw = opts["tokenizer_kwargs"] or {}
        if not isinstance(kw, dict) or set(kw) - {"truncation", "max_length"}:
            raise ValueError(f"tokenizer_kwargs takes truncation and max_length, got {kw!r}")
        opts["tokenizer_kwargs"] = kw
        if opts["targets"] is not None:
            opts["targets"] = self._target_ids(opts["targets"])
        return opts

    def _target_ids(self, targets) -> np.ndarray:
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise TypeError(f"targets must be a word or a list of words, got {targets!r}")
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in targets:
            i = vocab.get(target)
            if i is None:
                pieces = self.tokenizer(target, add_special_tokens=False, return_attention_mask=False,
                                        return_token_type_ids=False, max_length=1, truncation=True)["input_ids"]
                if not pieces:
                    warnings.warn(f"the target {target!r} is not in the model's vocabulary and has no tokens; "
                                  "ignoring it", stacklevel=5)
                    continue
                i = pieces[0]
                warnings.warn(f"the target {target!r} is not in the model's vocabulary; using its first word piece "
                              f"{self.tokenizer.convert_ids_to_tokens(i)!r} instead", stacklevel=5)
            ids.append(i)
        if not ids:
            raise ValueError(f"targets {list(targets)!r}: none of them can be scored; give at least one word")
        return np.array(list(dict.fromkeys(ids)))

    def _items(self, inputs):
        items, shape = super()._items(inputs)
        return items, ("one" if shape == "list" and len(items) == 1 else shape)

    def _run(self, items, opts, first):
        enc = self.tokenizer(items, **opts["tokenizer_kwargs"])
        mask_id, mask = self.tokenizer.mask_token_id, self.tokenizer.mask_token
        for k, e in enumerate(enc.encodings):
            if mask_id not in e.ids:
                cut = " (truncation cut it off)" if e.overflowing else ""
                raise ValueError(f"input {first + k} has no mask token {mask}{cut}: fill-mask predicts the word "
                                 f"at each {mask}")
        rows = list(enumerate(enc.encodings))
        for (filled,) in self._forward_rows(rows, opts["batch_size"],
                                            lambda out, j, e: self._fill(out["logits"][j], e.ids, opts), first):
            yield filled

    def _fill(self, logits: np.ndarray, ids: list, opts: dict):
        """logits: (T, vocab) for one text (T padded; only mask positions are read)."""
        tok = self.tokenizer
        masks = [t for t, i in enumerate(ids) if i == tok.mask_token_id]
        probs = softmax(logits[masks])  # (masks, vocab)
        targets = opts["targets"]
        if targets is not None:
            probs = probs[:, targets]  # (masks, targets)
        k = min(opts["top_k"], probs.shape[1])
        single = len(masks) == 1
        results = []
        for m, p in zip(masks, probs):
            best = np.argpartition(-p, k - 1)[:k] if k < len(p) else np.arange(len(p))
            best = best[np.argsort(-p[best], kind="stable")]
            row = []
            for b in best:
                token = int(targets[b]) if targets is not None else int(b)
                filled = list(ids)
                filled[m] = token
                filled = [i for i in filled if i != tok.pad_token_id]  # as transformers (a [PAD] guess included)
                row.append({"score": float(p[b]), "token": token, "token_str": tok.decode([token]),
                            "sequence": tok.decode(filled, skip_special_tokens=single)})
            results.append(row)
        return results[0] if single else results


# -- token classification ------------------------------------------------------------------------
AGGREGATIONS = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    """A label per token, or entities (transformers' `token_classification.py`; task names "ner" too).

    `pipe(text)` -> [{"entity", "score", "index", "word", "start", "end"}] for each token not labelled
    with one of `ignore_labels` (default ["O"]); `start`/`end` are character offsets into the text.
    `aggregation_strategy`: "simple" groups adjacent tokens of the same entity into {"entity_group",
    "score", "word", "start", "end"}; "first", "average" and "max" also keep every word whole, labelled
    by its first token, its mean scores or its best token. `word` is the tokens joined back
    ("##" pieces glued), as transformers gives it.
    A text longer than the model's limit is truncated, with a warning, unless `stride` is given: then
    it is cut into windows of the limit overlapping by `stride` tokens, every window labelled, and
    entities found twice in the overlaps merged (the longer, then the likelier, wins), as transformers
    does. `stride` needs an aggregation other than "none".
    """

    task = "token-classification"
    OPTIONS = {"aggregation_strategy": None, "ignore_labels": None, "stride": None, "batch_size": None}
    OUTPUTS = ("logits",)

    def _sanitize(self, opts, call):
        strategy = opts["aggregation_strategy"]
        opts["aggregation_strategy"] = "none" if strategy is None else \
            _choice("aggregation_strategy", strategy, AGGREGATIONS)
        ignore = opts["ignore_labels"]
        if ignore is None:
            ignore = ["O"]
        elif not isinstance(ignore, (list, tuple, set)) or not all(isinstance(x, str) for x in ignore):
            raise TypeError(f"ignore_labels must be a list of label names, got {ignore!r}")
        opts["ignore_labels"] = list(ignore)
        if opts["stride"] is not None:
            stride = _int_option("stride", opts["stride"], 0)
            limit = self._limit(opts)
            if stride >= limit:
                raise ValueError(f"stride={stride} must be less than the window of {limit} tokens "
                                 "(the tokenizer's model_max_length)")
            if strategy is not None and opts["aggregation_strategy"] == "none":
                raise ValueError('stride splits long texts into windows whose entities are then merged: use '
                                 'aggregation_strategy "simple", "first", "average" or "max", not "none"')
            opts["stride"] = stride
        return opts

    def _run(self, items, opts, first):
        stride = opts["stride"]
        kw = dict(truncation=True, max_length=self._limit(opts), return_offsets_mapping=True,
                  return_special_tokens_mask=True)
        if stride is not None:
            kw.update(return_overflowing_tokens=True, stride=stride)
        enc = self.tokenizer(items, **kw)
        if stride is None:
            owners = range(len(items))
            for k, e in enumerate(enc.encodings):
                if e.overflowing:
                    warnings.warn(f"input {first + k} is longer than the model's {kw['max_length']} tokens: only its "
                                  "beginning is labelled; pass stride= (and an aggregation_strategy) to label all of "
                                  "it", stacklevel=4)
        else:
            owners = enc["overflow_to_sample_mapping"]
        rows = list(zip(owners, enc.encodings))  # one row per window of a text, a text's windows in turn
        windows = self._forward_rows(rows, opts["batch_size"], lambda out, j, e: (e, out["logits"][j, :len(e.ids)]), first)
        for text, w in zip(items, windows):
            yield self._entities(text, w, opts)

    def _entities(self, text: str, windows: list, opts: dict) -> list[dict]:
        strategy, ignore = opts["aggregation_strategy"], opts["ignore_labels"]
        entities = []
        for enc, logits in windows:
            pre = self._pre_entities(text, enc, softmax(logits), strategy)
            entities += [x for x in self._aggregate(pre, strategy)
                         if x.get("entity") not in ignore and x.get("entity_group") not in ignore]
        if len(windows) > 1:
            entities = _merge_overlapping(entities)
        return [{**x, "score": float(x["score"])} for x in entities]

    def _pre_entities(self, text: str, enc, scores: np.ndarray, strategy: str) -> list[dict]:
        """One dict per real token: its piece, scores, character span and whether it continues a word."""
        tok = self.tokenizer
        prefix = getattr(tok.backend_tokenizer.model, "continuing_subword_prefix", None)
        pre = []
        for idx, (token_id, (start, end), special) in enumerate(zip(enc.ids, enc.offsets, enc.special_tokens_mask)):
            if special:
                continue
            word, word_ref = tok.convert_ids_to_tokens(token_id), text[start:end]
            if prefix:  # "##ing" is longer than the "ing" it covers: a continuation
                is_subword = len(word) != len(word_ref)
            else:  # no marker for continuations: guess from the spaces around the token
                if strategy in ("first", "average", "max"):
                    warnings.warn("Tokenizer does not support real words, using fallback heuristic", UserWarning)
                is_subword = start > 0 and " " not in text[start - 1:start + 1]
            if token_id == tok.unk_token_id:  # [UNK] stands for the text it covers
                word, is_subword = word_ref, False
            pre.append({"word": word, "scores": scores[idx], "start": start, "end": end, "index": idx,
                        "is_subword": is_subword})
        return pre

    def _aggregate(self, pre: list[dict], strategy: str) -> list[dict]:
        id2label = self.model.config.id2label
        if strategy in ("none", "simple"):
            entities = []
            for p in pre:
                best = int(p["scores"].argmax())
                entities.append({"entity": id2label[best], "score": p["scores"][best], "index": p["index"],
                                 "word": p["word"], "start": p["start"], "end": p["end"]})
            if strategy == "none":
                return entities
        else:
            entities = self._aggregate_words(pre, strategy)
        return self._group_entities(entities)

    def _aggregate_words(self, pre: list[dict], strategy: str) -> list[dict]:
        """Tokens of one word get one label: its first token's, its mean scores' or its best token's."""
        words, group = [], None
        for p in pre:
            if group is None:
                group = [p]
            elif p["is_subword"]:
                group.append(p)
            else:
                words.append(self._aggregate_word(group, strategy))
                group = [p]
        if group is not None:
            words.append(self._aggregate_word(group, strategy))
        return words

    def _aggregate_word(self, tokens: list[dict], strategy: str) -> dict:
        if strategy == "first":
            scores = tokens[0]["scores"]
        elif strategy == "max":
            scores = max(tokens, key=lambda t: t["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean(np.stack([t["scores"] for t in tokens]), axis=0)
        best = int(scores.argmax())
        return {"entity": self.model.config.id2label[best], "score": scores[best],
                "word": self.tokenizer.convert_tokens_to_string([t["word"] for t in tokens]),
                "start": tokens[0]["start"], "end": tokens[-1]["end"]}

    def _group_entities(self, entities: list[dict]) -> list[dict]:
        """Adjacent tokens (or words) with the same tag, a B- starting a new one, become one entity."""
        groups, current = [], []
        for entity in entities:
            if current:
                bi, tag = _bio(entity["entity"])
                _, last_tag = _bio(current[-1]["entity"])
                if tag == last_tag and bi != "B":
                    current.append(entity)
                    continue
                groups.append(self._group(current))
            current = [entity]
        if current:
            groups.append(self._group(current))
        return groups

    def _group(self, entities: list[dict]) -> dict:
        return {"entity_group": entities[0]["entity"].split("-", 1)[-1],
                "score": np.mean(np.nanmean([e["score"] for e in entities])),
                "word": self.tokenizer.convert_tokens_to_string([e["word"] for e in entities]),
                "start": entities[0]["start"], "end": entities[-1]["end"]}


def _bio(label: str) -> tuple[str, str]:
    """("B" or "I", tag): "B-PER" -> ("B", "PER"); a label without prefix counts as inside."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _merge_overlapping(entities: list[dict]) -> list[dict]:
    """Entities from overlapping windows: of those that overlap, keep the longest, then the likeliest."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda x: x["start"])
    merged, previous = [], entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, previous_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
            if length > previous_length or length == previous_length and entity["score"] > previous["score"]:
                previous = entity
        else:
            merged.append(previous)
            previous = entity
    merged.append(previous)
    return merged


# -- question answering --------------------------------------------------------------------------
class QuestionAnsweringPipeline(Pipeline):
    """The span of a context that answers a question (transformers 4.57's `question_answering.py`).

    `pipe(question="Who?", context="...")` (or `pipe({"question": ..., "context": ...})`, lists of
    either) -> {"score", "start", "end", "answer"}, `start`/`end` character offsets into the context;
    `top_k=k` gives up to k answers, best first (a list when more than one). A context longer than
    `max_seq_len` tokens (default min(model limit, 384)) is read in windows overlapping by `doc_stride`
    tokens (default min(max_seq_len // 2, 128)); the best spans of all windows compete, the same answer
    text found twice adding its scores. Spans run up to `max_answer_len` tokens (15);
    `handle_impossible_answer=True` lets the empty answer compete (scored by [CLS]);
    `align_to_words` (True) widens spans to whole words.
    """

    task = "question-answering"
    OPTIONS = {"top_k": 1, "doc_stride": None, "max_answer_len": 15, "max_seq_len": None,
               "handle_impossible_answer": False, "align_to_words": True, "batch_size": None}
    OUTPUTS = ("start_logits", "end_logits")
    INPUT = ('question= and context= (strings or lists), a {"question": ..., "context": ...} dict, '
             'a list of them or an iterator of them')
    _too_long_hint = "; lower max_seq_len"

    def __call__(self, *args, **kwargs):
        question, context = kwargs.pop("question", None), kwargs.pop("context", None)
        if args and (question is not None or context is not None):
            raise TypeError("question-answering pipeline: give the inputs either positionally or as question=/context=")
        if len(args) == 2 and all(isinstance(a, str) for a in args):
            inputs = [{"question": args[0], "context": args[1]}]
        elif len(args) == 1:
            inputs = args[0]
        elif args:
            inputs = list(args)
        elif question is not None and context is not None:
            inputs = self._from_lists(question, context)
        else:
            raise TypeError(f"question-answering pipeline: expected {self.INPUT}")
        if isinstance(inputs, dict):
            inputs = [inputs]
        return super().__call__(inputs, **kwargs)

    @staticmethod
    def _from_lists(question, context) -> list[dict]:
        if isinstance(question, str) and isinstance(context, str):
            return [{"question": question, "context": context}]
        if isinstance(question, list) and isinstance(context, str):
            return [{"question": q, "context": context} for q in question]
        if isinstance(question, list) and isinstance(context, list):
            if len(question) != len(context):
                raise ValueError(f"{len(question)} questions but {len(context)} contexts: give one context per "
                                 "question, or one context for all")
            return [{"question": q, "context": c} for q, c in zip(question, context)]
        raise TypeError(f"question must be a string or a list, and context a string or a list as long, got "
                        f"{type(question).__name__} and {type(context).__name__}")

    def _items(self, inputs):
        items, shape = super()._items(inputs)
        return items, ("one" if len(items) == 1 else "list")  # one example: its result itself, as transformers

    def _item(self, x, i):
        if not isinstance(x, dict) or set(x) != {"question", "context"}:
            got = f"keys {sorted(x)}" if isinstance(x, dict) else type(x).__name__
            raise ValueError(f'input {i} must be a {{"question": ..., "context": ...}} dict, got {got}')
        for key in ("question", "context"):
            if x[key] is None:
                raise ValueError(f"input {i}: the {key} is None")
            check_text(x[key], f"input {i} {key}")
            if not x[key]:
                raise ValueError(f"input {i}: the {key} is empty")
        return x["question"], x["context"]

    def _sanitize(self, opts, call):
        opts["top_k"] = _int_option("top_k", opts["top_k"], 1)
        opts["max_answer_len"] = _int_option("max_answer_len", opts["max_answer_len"], 1)
        max_seq_len = _int_option("max_seq_len", opts["max_seq_len"], 1, "min(model_max_length, 384)")
        opts["max_seq_len"] = max_seq_len = max_seq_len or min(self.tokenizer.model_max_length, 384)
        stride = _int_option("doc_stride", opts["doc_stride"], 0, "min(max_seq_len // 2, 128)")
        opts["doc_stride"] = stride = min(max_seq_len // 2, 128) if stride is None else stride
        if stride > max_seq_len:
            raise ValueError(f"doc_stride ({stride}) is larger than max_seq_len ({max_seq_len})")
        opts["handle_impossible_answer"] = _bool_option("handle_impossible_answer", opts["handle_impossible_answer"])
        opts["align_to_words"] = _bool_option("align_to_words", opts["align_to_words"])
        return opts

    def _run(self, items, opts, first):
        kw = dict(truncation="only_second", max_length=opts["max_seq_len"], stride=opts["doc_stride"],
                  return_token_type_ids=True, return_overflowing_tokens=True, return_offsets_mapping=True,
                  return_special_tokens_mask=True)
        questions, contexts = [q for q, _ in items], [c for _, c in items]
        try:
            enc = self.tokenizer(questions, contexts, **kw)
        except ValueError:
            self._explain_window(questions, opts, first)
            raise
        rows = list(zip(enc["overflow_to_sample_mapping"], enc.encodings))  # one row per window of a context
        windows = self._forward_rows(rows, opts["batch_size"], lambda out, j, e: (
            e, out["start_logits"][j, :len(e.ids)], out["end_logits"][j, :len(e.ids)]), first)
        for context, w in zip(contexts, windows):
            yield self._answers(context, w, opts)

    def _explain_window(self, questions, opts, first):
        max_seq_len, stride = opts["max_seq_len"], opts["doc_stride"]
        for k, q in enumerate(questions):
            n = len(self.tokenizer.tokenize(q))
            room = max_seq_len - n - self.tokenizer.num_special_tokens_to_add(pair=True)
            if room <= stride:
                raise ValueError(f"input {first + k}: the question takes {n} tokens, leaving {max(room, 0)} of "
                                 f"max_seq_len={max_seq_len} for each window of the context, not more than "
                                 f"doc_stride={stride}; ask a shorter question, or lower doc_stride")

    def _answers(self, context: str, windows: list, opts: dict):
        top_k, align = opts["top_k"], opts["align_to_words"]
        min_null_score = 1000000  # large and positive: beaten by any window's [CLS] score
        answers = []
        for enc, start, end in windows:
            ids = np.array(enc.ids)
            p_mask = np.array([[s != 1 for s in enc.sequence_ids]], dtype=np.int64)  # (1, T): 1 = not context
            p_mask[0, ids == self.tokenizer.cls_token_id] = 0  # [CLS] stands for "no answer"
            starts, ends, scores, min_null_score = select_starts_ends(
                start[None], end[None], p_mask, np.ones_like(p_mask), min_null_score,
                top_k * 2 + 10 if align else top_k,  # extra candidates: some merge when aligned to words
                opts["handle_impossible_answer"], opts["max_answer_len"])
            for s, e, score in zip(starts, ends, scores):
                begin, finish = _char_span(enc, int(s), int(e), align)
                text = context[begin:finish]
                same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                if same is not None:
                    same["score"] += score.item()
                else:
                    answers.append({"score": score.item(), "start": begin, "end": finish, "answer": text})
        if opts["handle_impossible_answer"]:
            answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        return answers[0] if len(answers) == 1 else answers


def _char_span(enc, s: int, e: int, align_to_words: bool) -> tuple[int, int]:
    """Characters of the context from token s to token e, widened to whole words when asked."""
    if align_to_words:
        try:
            start_word, end_word = enc.token_to_word(s), enc.token_to_word(e)
            return enc.word_to_chars(start_word, sequence_index=1)[0], enc.word_to_chars(end_word, sequence_index=1)[1]
        except Exception:  # [CLS] (the empty answer) has no word
            pass
    return enc.offsets[s][0], enc.offsets[e][1]


def select_starts_ends(start, end, p_mask, attention_mask, min_null_score=1000000, top_k=1,
                       handle_impossible_answer=False, max_answer_len=15):
    """transformers' rule: start and end probabilities over the allowed tokens, then the best spans.

    start, end: (1, T) logits; p_mask: (1, T), 1 where no answer may be. Returns (starts, ends, scores,
    min_null_score) with the empty answer's score ([CLS] start x [CLS] end) folded into min_null_score.
    """
    undesired_tokens = np.abs(np.array(p_mask) - 1) & attention_mask  # 1 where an answer may be
    undesired_tokens_mask = undesired_tokens == 0.0
    start = np.where(undesired_tokens_mask, -10000.0, start)
    end = np.where(undesired_tokens_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0  # [CLS] is never a span of its own
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def decode_spans(start, end, topk: int, max_answer_len: int, undesired_tokens):
    """The topk (start, end) token pairs by start x end probability, end >= start, at most max_answer_len long."""
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))  # (1, T, 1) @ (1, 1, T) -> (1, T, T)
    candidates = np.tril(np.triu(outer), max_answer_len - 1)  # zero where end < start or too long
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) < topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    # As transformers: nonzero() of the (1, T) mask also holds the row index 0, so token 0 always passes.
    allowed = undesired_tokens.nonzero()
    desired_spans = np.isin(starts, allowed) & np.isin(ends, allowed)
    starts, ends = starts[desired_spans], ends[desired_spans]
    return starts, ends, candidates[0, starts, ends]


# -- devices -------------------------------------------------------------------------------------
def _tf_device(device):
    """transformers' device argument as a TensorFlow device name: -1 or "cpu" the CPU, n or "cuda:n" GPU n."""
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, (int, str)):
        raise TypeError(f"device must be an int or a string like 'cpu', 'cuda:0' or '/GPU:0', got {device!r}")
    if isinstance(device, int):
        name = "/CPU:0" if device < 0 else f"/GPU:{device}"
    elif device.lower() == "cpu":
        name = "/CPU:0"
    elif device.lower().split(":")[0] in ("cuda", "gpu"):
        name = f"/GPU:{device.split(':')[1] if ':' in device else 0}"
    else:
        name = device
    from ._tensorflow import load_tensorflow_quietly

    tf = load_tensorflow_quietly()
    available = [d.name for d in tf.config.list_logical_devices()]  # "/device:CPU:0", ...
    if not any(a.upper().endswith(name.upper().lstrip("/")) for a in available):
        raise ValueError(f"device={device!r}: TensorFlow has no {name} here; it has {', '.join(available)}")
    return name


# -- the task table ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One task, declared once: everything `pipeline()`, the CLI, `trace` and the Ray entry point need."""

    name: str  # transformers' task name
    aliases: tuple[str, ...]  # other names pipeline() accepts, as transformers
    model_class: str  # the minibert.auto class that loads its checkpoints
    pipeline_class: type  # the Pipeline subclass above
    cli_verb: str  # `minibert <verb> ...`
    trace_shows: str  # the head's last stage `minibert trace` prints
    default_model: Callable[[], str] | None = None  # an offline folder when no model= is given
    example_model: str = ""  # a Hub id that fits, named in the error when there is no default

    def load_model(self, name_or_path, **kwargs):
        from . import auto

        return getattr(auto, self.model_class).from_pretrained(name_or_path, **kwargs)


TASKS = {t.name: t for t in (
    Task("text-classification", ("sentiment-analysis",), "AutoModelForSequenceClassification",
         TextClassificationPipeline, "classify", "labels: logits, probabilities, the label",
         default_model=default_model.path, example_model="distilbert-base-uncased-finetuned-sst-2-english"),
    Task("token-classification", ("ner",), "AutoModelForTokenClassification",
         TokenClassificationPipeline, "ner", "token labels: the best label of every token",
         example_model="dslim/bert-base-NER"),
    Task("question-answering", (), "AutoModelForQuestionAnswering",
         QuestionAnsweringPipeline, "qa", "answer spans: start and end logits, the best span",
         example_model="distilbert-base-cased-distilled-squad"),
    Task("fill-mask", (), "AutoModelForMaskedLM",
         FillMaskPipeline, "fill-mask", "masked-token candidates: the top tokens at each mask",
         example_model="bert-base-uncased"),
    Task("zero-shot-classification", (), "AutoModelForSequenceClassification",
         ZeroShotClassificationPipeline, "zero-shot", "labels: entailment logits per candidate label",
         example_model="typeform/distilbert-base-uncased-mnli"),
    Task("feature-extraction", (), "AutoModel",
         FeatureExtractionPipeline, "embed", "hidden states: the last layer's token vectors",
         default_model=default_model.encoder_dir, example_model="sentence-transformers/all-MiniLM-L6-v2"),
)}
ALIASES = {alias: t.name for t in TASKS.values() for alias in t.aliases}


def get_task(name: str) -> Task:
    """The task for a name or an alias ("sentiment-analysis", "ner")."""
    task = TASKS.get(ALIASES.get(name, name)) if isinstance(name, str) else None
    if task is None:
        known = ", ".join([*TASKS, *ALIASES])
        raise ValueError(f"unknown task {name!r}; supported: {known}")
    return task


def _sentence_transformers_max_length(folder):
    """A sentence-transformers folder states the length its embeddings were trained with (256 for MiniLM)."""
    import json
    import os

    path = os.path.join(str(folder), "sentence_bert_config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("max_seq_length")
    return None


def pipeline(task: str, model=None, tokenizer=None, *, batch_size=None, max_length=None, device=None,
             model_kwargs=None, **kwargs) -> Pipeline:
    """Build a pipeline like `transformers.pipeline`.

    task: a name from TASKS or an alias ("sentiment-analysis", "ner").
    model: a folder, a Hub id or a minibert model of the task's class. With none, text classification
    uses minibert's offline default (all-MiniLM-L6-v2 fine-tuned on SST-2) and feature extraction the
    all-MiniLM-L6-v2 encoder; other tasks need one.
    Other keyword arguments: the Hub's `revision`, `token`, `cache_dir`, `local_files_only`; the task's
    call options as defaults for every call (`top_k=3`, `aggregation_strategy="simple"`, ...);
    `model_kwargs` for `from_pretrained` (config overrides); `device` ("cpu", "cuda:0", -1, 0, or a
    TensorFlow device name). Anything else is refused.
    """
    from .checkpoint import HUB_KWARGS

    spec = get_task(task)
    hub = {k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs}
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise TypeError(f"model_kwargs must be a dict of from_pretrained arguments, got {model_kwargs!r}")
    cls = spec.pipeline_class
    unknown = sorted(set(kwargs) - set(cls.OPTIONS))
    if unknown:  # before loading anything
        raise TypeError(f"pipeline({spec.name!r}): unknown argument(s) {', '.join(unknown)}; the task takes "
                        f"{', '.join(cls.OPTIONS)}, and pipeline() also model_kwargs, device and {', '.join(HUB_KWARGS)}")
    _int_option("batch_size", batch_size, 1, "the default")  # numbers and the device checked before loading
    _int_option("max_length", max_length, 1, "the tokenizer's model_max_length")
    _tf_device(device)
    if model is None:
        if spec.default_model is None:
            raise ValueError(f"{spec.name} has no offline default model: pass model= a checkpoint folder or a Hub "
                             f"id (for example {spec.example_model})")
        model = spec.default_model()
    model_source = "the model's config"
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        if tokenizer is None:
            tokenizer = model
        if spec.name == "feature-extraction" and max_length is None:
            max_length = _sentence_transformers_max_length(model)
        model_source = os.path.join(os.fspath(model), "config.json")
        model = spec.load_model(model, **hub, **(model_kwargs or {}))
    else:
        _check_model_class(spec, model)
    if tokenizer is None:
        raise ValueError("pass tokenizer= when model is a model object")
    if isinstance(tokenizer, str) or hasattr(tokenizer, "__fspath__"):
        from .tokenizer import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer, **hub)
    check_tokenizer_fits(model.config, tokenizer, model_source)
    return cls(model, tokenizer, batch_size=batch_size, max_length=max_length, device=device, **kwargs)


def check_tokenizer_fits(config, tokenizer, model_source: str = "the model's config") -> None:
    """Refuse a tokenizer the model cannot read, naming both files: where a model and its tokenizer meet.

    - every id the tokenizer can produce (len(tokenizer), added tokens included) must have a row in the
      model's embedding table (`vocab_size`), or those tokens would fail or, on GPU, embed as zeros;
    - RoBERTa/XLM-R count position ids from the padding id (positions start at pad_token_id + 1), so the
      tokenizer's pad token must be the config's pad_token_id: a WordPiece vocabulary with [PAD] = 0 next to a
      RoBERTa config gives every token a wrong position. (A WordPiece tokenizer laid out as RoBERTa's, as
      klue/roberta-base has, passes.)
    - the reverse, a BERT/DistilBERT/ELECTRA model with RoBERTa's kind of tokenizer (a BPE or Unigram model
      with <s> as its first token instead of [CLS]), is refused too: its ids mean nothing to the model.
    """
    source = getattr(tokenizer, "vocab_file", None) or getattr(tokenizer, "name_or_path", "") or "the tokenizer"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(backend.model).__name__ if backend is not None else "unknown"
    model_type = config.model_type
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        n = len(tokenizer)
        missing = f"id {vocab_size} has" if n == vocab_size + 1 else f"ids {vocab_size} to {n - 1} have"
        raise ValueError(f"the tokenizer ({source}) has {n} tokens, added tokens included, but the model "
                         f"({model_source}) embeds only vocab_size={vocab_size}: {missing} no embedding; use the "
                         f"tokenizer saved with this model")
    described = f"a {kind} tokenizer with {tokenizer.cls_token!r} first and {tokenizer.pad_token!r} = id {tokenizer.pad_token_id}"
    if model_type in ("roberta", "xlm-roberta") and tokenizer.pad_token_id != config.pad_token_id:
        raise ValueError(f"the model ({model_source}) is model_type {model_type!r}, whose position ids start after "
                         f"pad_token_id={config.pad_token_id}, but the tokenizer ({source}) is {described}: a "
                         f"tokenizer of another family; use the tokenizer saved with this model")
    if model_type in ("bert", "distilbert", "electra") and kind != "WordPiece" and tokenizer.cls_token == "<s>":
        raise ValueError(f"the model ({model_source}) is model_type {model_type!r}, which reads [CLS]-first "
                         f"WordPiece ids, but the tokenizer ({source}) is {described}, RoBERTa's kind; use the "
                         f"tokenizer saved with this model")


def _check_model_class(spec: Task, model) -> None:
    from . import auto

    head = getattr(auto, spec.model_class).head
    config = getattr(model, "config", None)
    want = auto.FAMILIES.get(getattr(config, "model_type", None), {}).get(head)
    if want is None or not isinstance(model, want):
        raise TypeError(f"{spec.name} needs a {spec.model_class} model ({head}), got {type(model).__name__}")
