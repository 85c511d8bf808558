"""sentence-transformers' API on minibert: `SentenceTransformer(folder).encode(texts)` and
`CrossEncoder(folder).predict(pairs)` / `.rank(query, documents)`, with sentence-transformers' names,
defaults and numbers, on minibert's model and pipelines. A front end: the folder format it reads is
`sentence_folder.py`, below the pipelines; its names are re-exported here.
"""
from __future__ import annotations

import os

import numpy as np

from .sentence_folder import (  # noqa: F401  (re-exported: the folder format's names)
    ACTIVATIONS,
    ACTIVATION_ALIASES,
    Dense,
    LEGACY_POOLING_KEYS,
    MAX_MODULES,
    MODULE_KINDS,
    Normalize,
    POOLING_MODES,
    PRECISIONS,
    Pooling,
    SIMILARITY_FNS,
    SentenceFolder,
    SentenceFolderError,
    TRANSFORMER_CONFIGS,
    VERY_LARGE,
    activation_name,
    apply_lowercase,
    is_sentence_folder,
    l2_normalize,
    quantize_embeddings,
    read_folder,
    read_json,
    similarity,
)


def _resolve(name_or_path, cache_folder, local_files_only, revision, token) -> str:
    from .checkpoint import resolve

    if name_or_path is None:
        from . import default_model

        return default_model.encoder_dir()
    return resolve(name_or_path, revision=revision, local_files_only=local_files_only, cache_dir=cache_folder,
                   token=token)


def _load(task: str, folder: str, sentence: SentenceFolder, max_length, device, hub: dict):
    """The task's pipeline on the folder's Transformer module, with the folder's settings."""
    from .pipelines import check_tokenizer_fits, get_task
    from .tokenizer import AutoTokenizer

    spec = get_task(task)
    model = spec.load_model(sentence.model_folder, **hub)
    tokenizer = AutoTokenizer.from_pretrained(sentence.model_folder, **hub)
    check_tokenizer_fits(model.config, tokenizer, os.path.join(sentence.model_folder, "config.json"))
    return spec.pipeline_class(model, tokenizer, max_length=max_length, device=device, sentence=sentence)


def _progress(results, total: int, show: bool | None):
    if not show:
        return results
    from tqdm import tqdm

    return tqdm(results, total=total, desc="Batches", unit="text")


class SentenceTransformer:
    """`SentenceTransformer(folder_or_id).encode(texts)`: sentence-transformers' API and numbers on minibert.

    The folder's modules (pooling, Dense, Normalize), max_seq_length, do_lower_case, prompts, default
    prompt, similarity function and truncate_dim are read from its files; a plain transformers folder
    gets mean pooling, as sentence-transformers gives it. Texts run through minibert's feature-extraction
    pipeline: sorted by length, cut into forwards where the lengths jump, each padded to its own longest text.
    """

    def __init__(self, model_name_or_path=None, *, device=None, truncate_dim=None, cache_folder=None,
                 local_files_only=False, revision=None, token=None):
        from dataclasses import replace

        from .pipelines.base import int_option

        self.truncate_dim = int_option("truncate_dim", truncate_dim, 1, "every dimension")
        folder = _resolve(model_name_or_path, cache_folder, local_files_only, revision, token)
        sentence = read_folder(folder)
        if sentence.pooling is None:
            if is_sentence_folder(folder):
                raise SentenceFolderError(f"{folder} is a sentence-transformers {sentence.model_type} without a "
                                          "Pooling module: load it with CrossEncoder")
            # a plain transformers checkpoint: sentence-transformers adds mean pooling
            sentence = replace(sentence, pooling=Pooling(("mean",)), model_type="SentenceTransformer",
                               prompts={"query": "", "document": "", **sentence.prompts})
        if self.truncate_dim is not None and self.truncate_dim > sentence.dimension:
            raise ValueError(f"truncate_dim={self.truncate_dim} is more than the {sentence.dimension} dimensions "
                             "of this model's embeddings")
        if self.truncate_dim is None:
            self.truncate_dim = sentence.truncate_dim  # config_sentence_transformers.json may state one
        self.folder = sentence
        hub = dict(revision=revision, local_files_only=local_files_only, cache_dir=cache_folder, token=token)
        self._pipe = _load("feature-extraction", folder, sentence, sentence.max_seq_length, device, hub)
        self.prompts = dict(sentence.prompts)
        self.default_prompt_name = sentence.default_prompt_name
        self.similarity_fn_name = sentence.similarity_fn_name or "cosine"

    # -- what the folder says ----------------------------------------------------------------------
    @property
    def tokenizer(self):
        return self._pipe.tokenizer

    @property
    def model(self):
        """The minibert (Keras) encoder."""
        return self._pipe.model

    @property
    def max_seq_length(self) -> int:
        return self._pipe.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        from .pipelines.base import int_option

        self._pipe.max_length = int_option("max_seq_length", value, 1)

    def get_sentence_embedding_dimension(self) -> int:
        dim = self.folder.dimension
        return min(dim, self.truncate_dim) if self.truncate_dim is not None else dim

    get_embedding_dimension = get_sentence_embedding_dimension

    # -- encoding ----------------------------------------------------------------------------------
    def encode(self, sentences, prompt_name=None, prompt=None, batch_size=32, show_progress_bar=None,
               convert_to_numpy=True, convert_to_tensor=False, normalize_embeddings=False, truncate_dim=None,
               precision="float32"):
        """Embeddings of a text (a 1-D array) or a list of texts (2-D, one row per text), as
        `sentence_transformers.SentenceTransformer.encode`: the folder's modules, then truncate_dim, then
        normalize_embeddings, then `precision` ("int8", "uint8", "binary", "ubinary": quantize_embeddings)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}; use one of {', '.join(PRECISIONS)}")
        single = isinstance(sentences, str)  # one text: one vector, as sentence-transformers
        texts = [sentences] if single else list(sentences)
        options = dict(pooling=None, prompt_name=prompt_name, prompt=prompt, batch_size=batch_size,
                       normalize=True if normalize_embeddings else None,
                       truncate_dim=truncate_dim if truncate_dim is not None else self.truncate_dim)
        self._pipe.check_options(**options)  # every option checked before any model work
        if show_progress_bar:
            rows = list(_progress(self._pipe(iter(texts), **options), len(texts), True))
            vectors = np.stack(rows) if rows else self._pipe([], **options)
        else:
            vectors = self._pipe(texts, **options)
        if precision != "float32" and len(texts):
            vectors = quantize_embeddings(vectors, precision)
        if convert_to_tensor:
            from ._tensorflow import load_tensorflow_quietly

            out = load_tensorflow_quietly().convert_to_tensor(vectors)
            return out[0] if single else out
        if not convert_to_numpy:
            return vectors[0] if single else list(vectors)
        return vectors[0] if single else vectors

    def encode_query(self, sentences, prompt_name=None, prompt=None, **kwargs):
        """encode with the folder's "query" prompt when no prompt is given."""
        if prompt_name is None and prompt is None and "query" in self.prompts:
            prompt_name = "query"
        return self.encode(sentences, prompt_name=prompt_name, prompt=prompt, **kwargs)

    def encode_document(self, sentences, prompt_name=None, prompt=None, **kwargs):
        """encode with the folder's "document" (or "passage", "corpus") prompt when no prompt is given."""
        if prompt_name is None and prompt is None:
            prompt_name = next((n for n in ("document", "passage", "corpus") if n in self.prompts), None)
        return self.encode(sentences, prompt_name=prompt_name, prompt=prompt, **kwargs)

    def similarity(self, embeddings1, embeddings2) -> np.ndarray:
        """(n, m) scores between two sets of embeddings with the folder's similarity function (cosine by default)."""
        return similarity(embeddings1, embeddings2, self.similarity_fn_name)

    def __repr__(self):
        return (f"SentenceTransformer({self.folder.folder!r}: {self.folder.describe()}, "
                f"max_seq_length={self.max_seq_length}, dimension={self.get_sentence_embedding_dimension()})")


class CrossEncoder:
    """`CrossEncoder(folder_or_id).predict(pairs)` and `.rank(query, documents)`: sentence-transformers'
    cross-encoder API and numbers on minibert's sequence classifier and rerank pipeline.

    The activation is the folder's (`activation_fn` in config_sentence_transformers.json or config.json),
    else sigmoid for a one-label model and identity otherwise, as sentence-transformers has it.
    """

    def __init__(self, model_name_or_path, *, num_labels=None, max_length=None, activation_fn=None, device=None,
                 cache_folder=None, local_files_only=False, revision=None, token=None):
        from .pipelines.base import int_option

        max_length = int_option("max_length", max_length, 1, "the folder's")
        folder = _resolve(model_name_or_path, cache_folder, local_files_only, revision, token)
        sentence = read_folder(folder)
        if sentence.pooling is not None:
            raise SentenceFolderError(f"{folder} is a sentence-transformers embedding model (it has a Pooling "
                                      "module): load it with SentenceTransformer")
        self._activation = None if activation_fn is None else activation_name(activation_fn, "activation_fn")
        self.folder = sentence
        hub = dict(revision=revision, local_files_only=local_files_only, cache_dir=cache_folder, token=token)
        self._pipe = _load("rerank", folder, sentence, max_length or sentence.max_seq_length, device, hub)
        if num_labels is not None and num_labels != self.num_labels:
            raise ValueError(f"num_labels={num_labels}, but {os.path.join(sentence.model_folder, 'config.json')} "
                             f"has {self.num_labels} labels; minibert loads the trained classifier as it is")

    @property
    def num_labels(self) -> int:
        return self._pipe.model.config.num_labels

    @property
    def activation_fn(self) -> str:
        """The activation's name (a key of minibert.sentence_transformers.ACTIVATIONS)."""
        return self._activation or self._pipe.default_activation

    @property
    def max_length(self) -> int:
        return self._pipe.max_length

    @property
    def tokenizer(self):
        return self._pipe.tokenizer

    @property
    def model(self):
        return self._pipe.model

    def predict(self, sentences_pairs, batch_size=32, show_progress_bar=None, activation_fn=None,
                apply_softmax=False, convert_to_numpy=True):
        """Scores for (text, text_pair) pairs: (n,) for a one-label model, (n, labels) otherwise; one pair
        gives its score alone. As `sentence_transformers.CrossEncoder.predict`."""
        single = isinstance(sentences_pairs, (list, tuple)) and len(sentences_pairs) > 0 \
            and not isinstance(sentences_pairs[0], (list, tuple))
        pairs = [sentences_pairs] if single else list(sentences_pairs)
        fn = activation_name(activation_fn, "activation_fn") if activation_fn is not None else self.activation_fn
        items = [self._pipe.check_input(tuple(p) if isinstance(p, list) else p, i) for i, p in enumerate(pairs)]
        for i, item in enumerate(items):
            if not isinstance(item, tuple):
                raise ValueError(f"input {i}: CrossEncoder.predict takes (text, text_pair) pairs, got a single text")
        scores = self._pipe.scores(items, batch_size=batch_size, activation_fn=fn)  # (n, labels)
        if apply_softmax and len(scores):
            e = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        if self.num_labels == 1:
            scores = scores[:, 0]
        if not convert_to_numpy:
            scores = list(scores)
        return scores[0] if single else scores

    def rank(self, query, documents, top_k=None, return_documents=False, batch_size=32, show_progress_bar=None,
             activation_fn=None, apply_softmax=False, convert_to_numpy=True):
        """[{"corpus_id", "score"[, "text"]}] best first (ties keep their order), the top_k of them, as
        `sentence_transformers.CrossEncoder.rank`; scores are numpy float32 as it returns them."""
        from .pipelines.base import int_option
        from .tokenizer import check_text

        check_text(query, "query")
        if not query.strip():
            raise ValueError("query is empty: give the text to rank the documents against")
        if isinstance(documents, str) or not isinstance(documents, (list, tuple)):
            raise TypeError(f"documents must be a list of strings, got {type(documents).__name__}")
        if not documents:
            raise ValueError("documents is empty: give at least one document to rank")
        for i, doc in enumerate(documents):
            check_text(doc, f"document {i}")
        top_k = int_option("top_k", top_k, 1, "every document")
        if self.num_labels != 1:
            raise ValueError("CrossEncoder.rank() only works for models with num_labels=1; this model has "
                             f"{self.num_labels}: use CrossEncoder.predict() with pairs instead")
        scores = self.predict([(query, doc) for doc in documents], batch_size=batch_size,
                              show_progress_bar=show_progress_bar, activation_fn=activation_fn,
                              apply_softmax=apply_softmax)
        results = []
        for i, score in enumerate(scores):
            results.append({"corpus_id": i, "score": score, **({"text": documents[i]} if return_documents else {})})
        return sorted(results, key=lambda r: r["score"], reverse=True)[:top_k]

    def __repr__(self):
        return f"CrossEncoder({self.folder.folder!r}, num_labels={self.num_labels}, activation_fn={self.activation_fn})"
