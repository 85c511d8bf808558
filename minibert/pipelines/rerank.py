"""Rerank: documents scored against a query by a cross-encoder, as sentence-transformers' CrossEncoder scores them."""
from __future__ import annotations

import numpy as np

from .. import sentence_folder as st
from ..tokenizer import check_text
from . import columns as c
from .base import Command, Pipeline, Task, count, int_option
from .text_classification import TRACE  # its model is a sequence classifier: trace shows its logits


class RerankPipeline(Pipeline):
    """Relevance scores of documents for a query, from a cross-encoder (a sequence classifier that reads
    the pair `[CLS] query [SEP] document [SEP]`), as `sentence_transformers.CrossEncoder.predict` gives them.

    `pipe(documents, query="...")` -> one {"score": float} per document, in input order (sort them, or use
    `minibert.CrossEncoder(...).rank`). An input may also be a (text, text_pair) pair, without query.
    The score is the model's one logit through the folder's activation (config_sentence_transformers.json
    or config.json `activation_fn`; sigmoid by default, as sentence-transformers) or `activation_fn=`
    ("sigmoid", "identity", "tanh", ...). Pairs longer than the model's limit are truncated longest first.
    """

    task = "rerank"
    OPTIONS = {"query": None, "activation_fn": None, "max_length": None, "batch_size": None, "truncation_side": None}
    OUTPUTS = ("logits",)
    INPUT = "a document string (with query=...), a (text, text_pair) pair, a list of them or an iterator of them"

    def __init__(self, model, tokenizer, *args, sentence: st.SentenceFolder | None = None, **kwargs):
        self.sentence = sentence  # the folder's settings (activation, do_lower_case), or None
        if sentence is not None and sentence.do_lower_case:
            st.apply_lowercase(tokenizer)
        super().__init__(model, tokenizer, *args, **kwargs)

    @property
    def default_activation(self) -> str:
        """sentence-transformers' rule: the folder's activation_fn, else sigmoid for one label, identity otherwise."""
        if self.sentence is not None and self.sentence.activation_fn:
            return self.sentence.activation_fn
        return "Sigmoid" if self.model.config.num_labels == 1 else "Identity"

    def __call__(self, inputs, **kwargs):
        self._check_one_label()
        return super().__call__(inputs, **kwargs)

    def results_for(self, inputs, **kwargs):
        self._check_one_label()
        return super().results_for(inputs, **kwargs)

    def _check_one_label(self):
        n = self.model.config.num_labels
        if n != 1:
            raise ValueError(f"rerank needs a cross-encoder with one output (num_labels=1); this model has {n} labels "
                             "(config.json id2label): score its pairs with CrossEncoder.predict instead")

    def _sanitize(self, opts, call):
        query = opts["query"]
        if query is not None:
            check_text(query, "query")
            if not query.strip():
                raise ValueError("query is empty: give the text to rank the documents against")
        fn = opts["activation_fn"]
        opts["activation"] = self.default_activation if fn is None else st.activation_name(fn, "activation_fn")
        opts["max_length"] = int_option("max_length", opts["max_length"], 1, "the pipeline's")
        opts["vectors"] = False  # CrossEncoder.predict asks for every label's score
        return opts

    def check_input(self, x, i=0):
        if isinstance(x, (tuple, list)):
            if len(x) != 2:
                raise ValueError(f"input {i}: a pair is (text, text_pair), got {len(x)} items")
            check_text(x[0], f"input {i} [0]")
            check_text(x[1], f"input {i} [1]")
            return tuple(x)
        check_text(x, f"input {i}", "str (a document, with query=...) or a (text, text_pair) pair")
        return x

    def _items(self, inputs):
        if isinstance(inputs, tuple) and len(inputs) == 2 and all(isinstance(t, str) for t in inputs):
            return [self.check_input(inputs, 0)], "one"
        return super()._items(inputs)

    def _encode(self, items, opts, first):
        pairs = []
        for k, item in enumerate(items):
            if isinstance(item, str):
                if opts["query"] is None:
                    raise ValueError(f"input {first + k} is a single document: give query=... to score it against")
                item = (opts["query"], item)
            pairs.append(item)
        enc = self.tokenizer(pairs, truncation="longest_first", max_length=self._limit(opts),
                             truncation_side=opts["truncation_side"])
        return list(enumerate(enc.encodings))

    def _take(self, out, j, enc, opts):
        return out["logits"][j]  # (labels,)

    def _decode(self, item, rows, opts):
        scores = st.ACTIVATIONS[opts["activation"]](rows[0].astype(np.float32))
        return scores if opts["vectors"] else {"score": float(scores[0])}

    def scores(self, pairs: list, batch_size: int | None = None, activation_fn=None) -> np.ndarray:
        """(n_pairs, labels) scores for (text, text_pair) pairs, any number of labels: CrossEncoder.predict's engine."""
        opts = self._options({"batch_size": batch_size, "activation_fn": activation_fn})
        opts["vectors"] = True
        items = [self.check_input(tuple(p) if isinstance(p, list) else p, i) for i, p in enumerate(pairs)]
        rows = list(self._run(items, opts, 0)) if items else []
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.model.config.num_labels), np.float32)


def folder_settings(folder) -> dict:
    """A cross-encoder folder's activation, max length and lower-casing (modules.json or a plain checkpoint)."""
    sentence = st.read_folder(folder)
    if sentence.pooling is not None:
        raise ValueError(f"{folder} is a sentence-transformers embedding model (it has a Pooling module): "
                         "use `minibert embed` or SentenceTransformer, not a cross-encoder's rerank")
    return {"sentence": sentence, "max_length": sentence.max_seq_length, "model_folder": sentence.model_folder}


# -- records, the command ---------------------------------------------------------------------------
def columns(options, pipe):
    return {"score": c.FLOAT64}


def record(result, options) -> dict:
    return {"score": result["score"]}


def _arguments(p):
    p.add_argument("--query", metavar="TEXT", help="the query to rank the documents (the input lines) against")
    p.add_argument("--top-k", type=count, metavar="K", help="print only the K best documents (default: all, best first)")
    p.add_argument("--activation", choices=sorted(st.ACTIVATION_ALIASES),
                   help="scores from the logit (default: the folder's activation_fn, else sigmoid)")


def _options(args) -> dict:
    if args.query is None:
        raise ValueError("rerank needs --query TEXT (the documents come from TEXT arguments, --file or stdin)")
    if not args.query.strip():
        raise ValueError("--query is empty: give the text to rank the documents against")
    if args.top_k is not None and getattr(args, "input", None):
        raise ValueError("--top-k sorts every document: with --input each row gets its score; sort the output instead")
    options = {"query": args.query}
    if args.activation:
        options["activation_fn"] = args.activation
    return options


def _arrange(results: list, args) -> list:
    """Best first (a stable sort: ties keep their input order, as sentence-transformers' rank), the top K."""
    if not results:
        raise ValueError("no documents to rank: give them as TEXT arguments, --file or on standard input")
    ranked = sorted(results, key=lambda r: r[1][1]["score"], reverse=True)
    return ranked[:args.top_k] if args.top_k else ranked


TASK = Task(
    "rerank", (), "AutoModelForSequenceClassification", RerankPipeline,
    Command("rerank", "rank documents against a query with a cross-encoder",
            "Score each document (one per input line) against --query with a cross-encoder (a sentence-transformers "
            "CrossEncoder folder or any one-label sequence classifier); print them best first.",
            "none: pass a cross-encoder folder", _arguments, _options,
            cells=lambda rec, args: [f"{rec['score']:.4f}"], header=lambda args: ["score"], arrange=_arrange),
    columns, record, TRACE, folder_settings=folder_settings, example_model="cross-encoder/ms-marco-MiniLM-L6-v2")
