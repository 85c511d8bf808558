"""The tiny checkpoints every pipeline task's tests share, and the helpers that compare with transformers.

Checkpoints are tiny (hidden 32, 2 layers) with a 40-position table, so that "longer than the model's
limit" costs little; their weights are random (LayerNorms perturbed) and written by transformers'
`save_pretrained`. Results must agree exactly in labels, tokens, words, spans and character offsets,
and within 1e-5 in scores. Bad inputs and options must raise a clear error before any model work and
leave the pipeline usable. The fixtures that build the checkpoints are in conftest.py, one per session.
"""
import functools
import json
import os
import shutil

import pytest

from minibert import pipeline
from reference import make_checkpoint, minilm_dir

POSITIONS = 40
BERT = dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2,
            max_position_embeddings=POSITIONS)
DISTILBERT = dict(dim=32, n_heads=4, hidden_dim=37, n_layers=2, max_position_embeddings=POSITIONS)
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]

LONG = ("Zoë Dubois flew from São Paulo to Paris with Ana Müller, then took the train to Berlin and "
        "Munich, where the Siemens team met the Café Noir owners before 東京 and 北京 called. ") * 3
TEXTS = ["I've been waiting for a HuggingFace course my whole life.", "I hate this so much!",
         "Café naïve résumé, crème brûlée à Zürich.", "東京 and 北京 are big cities", LONG, "ok"]

MASKED = ["Paris is the [MASK] of France.", "The [MASK] sat on the [MASK] all day.",
          "Café [MASK] à Zürich, 東京 [MASK].", "[MASK]"]
NER_TEXTS = ["Zoë Dubois met Ana Müller in São Paulo.", "Angela works for Siemens in Munich 🙂 today",
             "東京 and 北京 are far from Berlin.", "no entities here at all", ""]
CONTEXT = "Zoë Dubois flew from São Paulo to Paris in 2019 with Ana Müller."
QUESTIONS = ["Who flew to Paris?", "When did Zoë fly?", "Where is 東京?"]


# -- checkpoints ---------------------------------------------------------------------------------
def uncased_tokenizer(folder, **config):
    """The real MiniLM (uncased WordPiece) tokenizer, limited to the tiny models' 40 positions."""
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(os.path.join(minilm_dir(), name), folder)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": POSITIONS,
                   "clean_up_tokenization_spaces": True, **config}, f)
    return str(folder)


def checkpoint(tmp_path_factory, name, family, head, tokenizer, seed=0, **config):
    folder = tmp_path_factory.mktemp(name)
    size = BERT if family == "bert" else DISTILBERT
    with open(os.path.join(tokenizer, "tokenizer.json"), encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    make_checkpoint(folder, family, head, seed=seed, vocab_size=len(vocab), **size, **config)
    for file in os.listdir(tokenizer):
        shutil.copy(os.path.join(tokenizer, file), folder)
    if family == "distilbert":  # its tokenizer class gives no token types, in transformers as in minibert
        path = os.path.join(folder, "tokenizer_config.json")
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        with open(path, "w", encoding="utf-8") as f:
            json.dump({**config, "tokenizer_class": "DistilBertTokenizer"}, f)
    return str(folder)


def labels(names):
    return dict(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})


@functools.lru_cache(maxsize=None)
def reference(task, folder):
    """transformers' pipeline on the folder, built once per module run (options go to each call)."""
    import transformers

    return transformers.pipeline(task, model=folder, tokenizer=folder)


@functools.lru_cache(maxsize=None)
def ours(task, folder):
    """minibert's pipeline on the folder, built once: its compiled forwards are reused across tests."""
    return pipeline(task, model=folder)


class Counting:
    """A model that counts its forwards: bad input must be refused before any."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.model(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.model, name)


def refused_before_work(pipe, call, error, match):
    """`call(pipe)` raises `error` without a forward, and the pipeline still works afterwards."""
    counting = Counting(pipe.model)
    probe = type(pipe)(counting, pipe.tokenizer, batch_size=pipe.batch_size, **pipe.options)
    with pytest.raises(error, match=match):
        call(probe)
    assert counting.calls == 0
