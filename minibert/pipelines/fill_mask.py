"""Fill-mask: the likeliest tokens at each mask token of a text."""
from __future__ import annotations

import warnings

import numpy as np

from . import columns as c
from .base import Command, Pipeline, Task, TraceStage, count, int_option, softmax


class FillMaskPipeline(Pipeline):
    """The likeliest tokens at each mask token (transformers' `fill_mask.py`).

    `pipe("Paris is the [MASK] of France.")` -> the top_k (default 5) {"score", "token", "token_str",
    "sequence"}, best first. A text with several masks gives one such list per mask (each scored on its
    own, the other masks left in `sequence`). top_k may not pass the vocabulary's size (refused before any
    work); with `targets`, it is cut to their number, as in transformers. A list of texts gives a list of those; a list of one text
    gives that text's result, as in transformers. `targets` limits the candidates to these words: a
    word missing from the vocabulary is replaced, with a warning, by its first word piece.
    `tokenizer_kwargs={"truncation": True}` truncates long texts (a mask cut off is then an error).
    """

    task = "fill-mask"
    OPTIONS = {"top_k": 5, "targets": None, "tokenizer_kwargs": None, "batch_size": None}
    OUTPUTS = ("logits",)

    def _too_long_hint(self, opts, positions):
        kw = opts["tokenizer_kwargs"]
        if not kw.get("truncation"):
            return "; pass tokenizer_kwargs={'truncation': True}"
        source = f"max_length={kw['max_length']}" if kw.get("max_length") else \
            f"the tokenizer's model_max_length={self.tokenizer.model_max_length}"
        return f"; truncation is on, but to {source}: pass tokenizer_kwargs={{'truncation': True, 'max_length': {positions}}}"

    def _sanitize(self, opts, call):
        opts["top_k"] = int_option("top_k", opts["top_k"], 1)
        kw = opts["tokenizer_kwargs"] or {}
        if not isinstance(kw, dict) or set(kw) - {"truncation", "max_length"}:
            raise ValueError(f"tokenizer_kwargs takes truncation and max_length, got {kw!r}")
        opts["tokenizer_kwargs"] = kw
        if opts["targets"] is not None:
            opts["targets"] = self._target_ids(opts["targets"])
        elif opts["top_k"] > self.model.config.vocab_size:
            # transformers fails here too (torch's topk); every token of every mask is rarely meant, and
            # with one decoded sequence per candidate it is minutes of work and gigabytes of output.
            raise ValueError(f"top_k={opts['top_k']} is more than the {self.model.config.vocab_size} tokens of the "
                             "model's vocabulary; ask for at most that many candidates per mask")
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

    def _encode(self, items, opts, first):
        enc = self.tokenizer(items, **opts["tokenizer_kwargs"])
        mask_id, mask = self.tokenizer.mask_token_id, self.tokenizer.mask_token
        for k, e in enumerate(enc.encodings):
            if mask_id not in e.ids:
                cut = " (truncation cut it off)" if e.overflowing else ""
                raise ValueError(f"input {first + k} has no mask token {mask}{cut}: fill-mask predicts the word "
                                 f"at each {mask}")
        return list(enumerate(enc.encodings))

    def _take(self, out, j, enc, opts):
        return self._fill(out["logits"][j], enc.ids, opts)

    def _fill(self, logits: np.ndarray, ids: list, opts: dict):
        """logits: (T, vocab) for one text (T padded; only mask positions are read)."""
        tok = self.tokenizer
        masks = [t for t, i in enumerate(ids) if i == tok.mask_token_id]
        probs = softmax(logits[masks])  # (masks, vocab)
        targets = opts["targets"]
        if targets is not None:
            probs = probs[:, targets]  # (masks, targets)
        k = min(opts["top_k"], probs.shape[1])  # top_k past the targets: each target once, as transformers
        single = len(masks) == 1
        pad = tok.pad_token_id
        results = []
        for m, p in zip(masks, probs):
            best = np.argpartition(-p, k - 1)[:k] if k < len(p) else np.arange(len(p))
            best = best[np.argsort(-p[best], kind="stable")]
            tokens = [int(targets[b]) if targets is not None else int(b) for b in best]
            filled = []
            for token in tokens:
                seq = list(ids)
                seq[m] = token
                filled.append([i for i in seq if i != pad])  # as transformers (a [PAD] guess included)
            # One batched decode per mask: with thousands of candidates, one decode call each would take minutes.
            words = tok.batch_decode([[t] for t in tokens])
            sequences = tok.batch_decode(filled, skip_special_tokens=single)
            results.append([{"score": float(p[b]), "token": token, "token_str": word, "sequence": seq}
                            for b, token, word, seq in zip(best, tokens, words, sequences)])
        return results[0] if single else results


# -- records, the command, trace ------------------------------------------------------------------
def columns(options, pipe):
    candidate = c.struct([("score", c.FLOAT64), ("token", c.INT64), ("token_str", c.STRING),
                          ("sequence", c.STRING)])
    return {"masks": c.list_of(c.list_of(candidate))}


def record(result, options) -> dict:
    """One list of candidates per mask token, however many masks the text has."""
    return {"masks": result if result and isinstance(result[0], list) else [result]}


def _arguments(p):
    p.add_argument("--top-k", type=count, metavar="K", help="candidates per mask (default 5)")
    p.add_argument("--targets", metavar="A,B", help="score only these tokens")


def _options(args) -> dict:
    options = {"top_k": args.top_k or 5}
    if args.targets:
        options["targets"] = args.targets.split(",")
    return options


def _cells(rec, args) -> list:
    return [" | ".join(" ".join(f"{c['token_str']} {c['score']:.3f}" for c in cands) for cands in rec["masks"])]


def _trace(out, tokens, mask, config, tokenizer, k: int = 5) -> dict:
    """logits over the vocabulary at every masked position -> softmax -> the k most likely tokens."""
    logits = out.logits.numpy()  # (B, T, vocab)
    masked = []
    for i, row in enumerate(tokens):
        for t, tok in enumerate(row):
            if tok == tokenizer.mask_token and mask[i][t]:
                probs = softmax(logits[i, t])
                best = np.argsort(-probs)[:k]
                masked.append({"text": i, "position": t, "candidates": [
                    {"token": tokenizer.convert_ids_to_tokens(int(j)), "id": int(j), "score": round(float(probs[j]), 4)}
                    for j in best]})
    return {"masked": masked}


def _trace_lines(r) -> list:
    return [f"text {m['text']}, mask at {m['position']}: " + ", ".join(f"{c['token']} {c['score']}" for c in m["candidates"])
            for m in r["masked"]]


TASK = Task(
    "fill-mask", (), "AutoModelForMaskedLM", FillMaskPipeline,
    Command("fill-mask", "fill in the mask token",
            "The most likely tokens at each mask token of each text. One result per input, in order.",
            "none: pass a masked-LM checkpoint", _arguments, _options, _cells,
            header=lambda args: ["candidates (token score), per mask"]),
    columns, record, TraceStage("masked-lm", "masked-token candidates: the top tokens at each mask", _trace, _trace_lines),
    example_model="bert-base-uncased")
