"""Zero-shot classification: labels named at call time, each scored as an NLI hypothesis."""
from __future__ import annotations

import string

import numpy as np

from ..tokenizer import check_text
from . import columns as c
from .base import Command, Pipeline, Task, bool_option, softmax
from .text_classification import TRACE  # its model is a sequence classifier: trace shows its labels


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
            fields = list(string.Formatter().parse(template))
        except ValueError as e:
            raise ValueError(f"hypothesis_template {template!r} cannot be filled with a label: {e!r}") from None
        for _, name, spec, conversion in fields:  # only {} or {0}: a format spec could ask for gigabytes
            if name is not None and (name not in ("", "0") or spec or conversion):
                raise ValueError(f"hypothesis_template {template!r}: use {{}} alone where the label goes, not "
                                 f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}")
        filled = template.format(labels[0])
        if filled == template:
            raise ValueError(f"hypothesis_template {template!r} has no {{}} where the label goes")
        opts["multi_label"] = bool_option("multi_label", opts["multi_label"])
        return opts

    def check_input(self, x, i=0):
        check_text(x, f"input {i}")
        if not x:
            raise ValueError(f"input {i} is an empty text: zero-shot classification needs a sequence to classify")
        return x

    def _encode(self, items, opts, first):
        labels, template = opts["candidate_labels"], opts["hypothesis_template"]
        hypotheses = [template.format(label) for label in labels]
        pairs = [(text, h) for text in items for h in hypotheses]
        try:  # truncate the text, never the hypothesis
            enc = self.tokenizer(pairs, truncation="only_first", max_length=self._limit(opts))
        except ValueError:
            self._explain_too_long(items, hypotheses, opts, first)
            raise
        n = len(labels)
        return [(p // n, e) for p, e in enumerate(enc.encodings)]  # one row per (text, label)

    def _take(self, out, j, enc, opts):
        return out["logits"][j]

    def _decode(self, text, rows, opts):
        return self._ranked(text, opts["candidate_labels"], np.stack(rows), opts)

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


# -- records, the command ---------------------------------------------------------------------------
def columns(options, pipe):
    return {"labels": c.list_of(c.STRING), "scores": c.list_of(c.FLOAT64)}


def record(result, options) -> dict:
    return {"labels": result["labels"], "scores": result["scores"]}


def _arguments(p):
    p.add_argument("--labels", metavar="A,B,C", help="the candidate labels, comma separated")
    p.add_argument("--multi-label", action="store_true", help="score each label on its own (sigmoid-like)")
    p.add_argument("--template", metavar="TEXT", help='hypothesis template (default "This example is {}.")')


def _options(args) -> dict:
    if not args.labels:
        raise ValueError("zero-shot needs --labels A,B,C (the candidate labels)")
    labels = [x.strip() for x in args.labels.split(",")]
    if "" in labels:
        raise ValueError(f"--labels {args.labels!r}: label {labels.index('') + 1} is empty")
    options = {"candidate_labels": labels, "multi_label": args.multi_label}
    if args.template:
        options["hypothesis_template"] = args.template
    return options


TASK = Task(
    "zero-shot-classification", (), "AutoModelForSequenceClassification", ZeroShotClassificationPipeline,
    Command("zero-shot", "classify texts into labels you name (an NLI model)",
            "Zero-shot classification: each candidate label is scored as an NLI hypothesis. One result per input, "
            "in order.", "none: pass an NLI checkpoint", _arguments, _options,
            cells=lambda rec, args: [" ".join(f"{label} {score:.4f}" for label, score in zip(rec["labels"], rec["scores"]))],
            header=lambda args: ["labels (best first)"]),
    columns, record, TRACE, example_model="typeform/distilbert-base-uncased-mnli")
