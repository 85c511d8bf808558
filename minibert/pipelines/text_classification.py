"""Text classification: labels for texts or text pairs (sentiment by default; cross-encoders, NLI)."""
from __future__ import annotations

import numpy as np

from .. import default_model
from ..tokenizer import check_text
from . import columns as c
from .base import Command, Pipeline, Task, TraceStage, choice, count, int_option, rounded, sigmoid, softmax

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
    OPTIONS = {"top_k": _UNSET, "function_to_apply": None, "truncation": True, "max_length": None, "batch_size": None,
               "truncation_side": None}
    OUTPUTS = ("logits",)
    INPUT = 'a string, a {"text": ..., "text_pair": ...} dict, a list of them or an iterator of them'

    def _sanitize(self, opts, call):
        top_k = opts["top_k"]
        # transformers' rules: a top_k given anywhere gives sorted lists; one given in this call also stops
        # a single string's result from being wrapped in a list.
        opts["legacy"] = top_k is _UNSET
        opts["wrap"] = "top_k" not in (call or {})
        if top_k is not _UNSET:
            opts["top_k"] = int_option("top_k", top_k, 1, "all labels")
        fn = opts["function_to_apply"]
        opts["function_to_apply"] = self._default_function() if fn is None else \
            choice("function_to_apply", fn, ("softmax", "sigmoid", "none"))
        if not isinstance(opts["truncation"], bool):
            opts["truncation"] = choice("truncation", opts["truncation"], ("longest_first", "only_first", "only_second"))
        opts["max_length"] = int_option("max_length", opts["max_length"], 1, "the pipeline's")
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
            return [self.check_input(inputs, 0)], "dict"
        return super()._items(inputs)

    def check_input(self, x, i=0):
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

    def _encode(self, items, opts, first):
        enc = self.tokenizer(items, truncation=opts["truncation"], max_length=self._limit(opts),
                             truncation_side=opts["truncation_side"])
        return list(enumerate(enc.encodings))

    def _take(self, out, j, enc, opts):
        return out["logits"][j]

    def _decode(self, item, rows, opts):
        return self._labels(rows[0], opts)

    def _labels(self, logits: np.ndarray, opts: dict):
        scores = {"softmax": softmax, "sigmoid": sigmoid, "none": lambda x: x}[opts["function_to_apply"]](logits)
        id2label = self.model.config.id2label
        if opts["legacy"]:
            best = int(scores.argmax())
            return {"label": id2label[best], "score": float(scores[best])}
        order = np.argsort(-scores, kind="stable")[:opts["top_k"]]  # top_k None: every label
        return [{"label": id2label[int(i)], "score": float(scores[i])} for i in order]


# -- records, the command, trace ------------------------------------------------------------------
def columns(options, pipe):
    types = {"label": c.STRING, "score": c.FLOAT64}
    if options.get("top_k"):  # as `minibert classify --top-k K` prints: the K best, best first
        types["labels"] = c.list_of(c.struct([("label", c.STRING), ("score", c.FLOAT64)]))
    return types


def record(result, options) -> dict:
    ranked = result if isinstance(result, list) else [result]
    return {"label": ranked[0]["label"], "score": ranked[0]["score"], "labels": ranked}


def _arguments(p):
    p.add_argument("--top-k", type=count, metavar="K", help="show the K best labels")
    p.add_argument("--pair", action="store_true", help="each input is TEXT<TAB>TEXT_PAIR")
    p.add_argument("--function", choices=["softmax", "sigmoid", "none"],
                   help="scores from logits (default: sigmoid for one label or multi-label models, else softmax)")


def _options(args) -> dict:
    options = {"top_k": args.top_k} if args.top_k else {}
    if args.function:
        options["function_to_apply"] = args.function
    return options


def _pair(text: str) -> dict:
    if text.count("\t") != 1:
        raise ValueError(f"--pair: each input is TEXT<TAB>TEXT_PAIR, one tab, got {text.count(chr(9))} in {text[:60]!r}")
    a, b = text.split("\t")
    return {"text": a, "text_pair": b}


def _cells(rec, args) -> list:
    if args.top_k:
        return [" ".join(f"{r['label']} {r['score']:.4f}" for r in rec["labels"])]
    return [rec["label"], f"{rec['score']:.4f}"]


def _trace(out, tokens, mask, config, tokenizer) -> dict:
    """logits -> softmax over labels -> one label per text."""
    logits = out.logits.numpy()
    probs = softmax(logits)
    return {"logits": rounded(logits), "probabilities": rounded(probs), "id2label": dict(config.id2label),
            "labels": [config.id2label[int(i)] for i in probs.argmax(-1)]}


def _trace_lines(r) -> list:
    return [f"id2label: {r['id2label']}"] + [
        f"text {i}: logits {r['logits'][i]} -> softmax {r['probabilities'][i]} -> {r['labels'][i]}"
        for i in range(len(r["texts"]))]


TRACE = TraceStage("sequence-classification", "labels: logits, probabilities, the label", _trace, _trace_lines)

TASK = Task(
    "text-classification", ("sentiment-analysis",), "AutoModelForSequenceClassification", TextClassificationPipeline,
    Command("classify", "label texts (sentiment by default), or text pairs",
            "Classify texts, or pairs with --pair (cross-encoders, NLI). One result per input, in order.",
            "minibert's offline SST-2 sentiment model", _arguments, _options, _cells,
            header=lambda args: [f"top {args.top_k} labels"] if args.top_k else ["label", "score"],
            make_input=lambda args: _pair if args.pair else str),
    columns, record, TRACE, pair_keys=("text", "text_pair"),
    default_model=default_model.path, example_model="distilbert-base-uncased-finetuned-sst-2-english")
