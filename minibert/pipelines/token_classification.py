"""Token classification ("ner"): a label per token, or entities grouped from them, with character offsets."""
from __future__ import annotations

import warnings

import numpy as np

from . import columns as c
from .base import Command, Pipeline, Task, TraceStage, choice, int_option, softmax

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
            choice("aggregation_strategy", strategy, AGGREGATIONS)
        ignore = opts["ignore_labels"]
        if ignore is None:
            ignore = ["O"]
        elif not isinstance(ignore, (list, tuple, set)) or not all(isinstance(x, str) for x in ignore):
            raise TypeError(f"ignore_labels must be a list of label names, got {ignore!r}")
        opts["ignore_labels"] = list(ignore)
        if opts["stride"] is not None:
            stride = int_option("stride", opts["stride"], 0)
            limit = self._limit(opts)
            if stride >= limit:
                raise ValueError(f"stride={stride} must be less than the window of {limit} tokens "
                                 "(the tokenizer's model_max_length)")
            if strategy is not None and opts["aggregation_strategy"] == "none":
                raise ValueError('stride splits long texts into windows whose entities are then merged: use '
                                 'aggregation_strategy "simple", "first", "average" or "max", not "none"')
            opts["stride"] = stride
        return opts

    def _encode(self, items, opts, first):
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
                                  "it", stacklevel=5)
        else:
            owners = enc["overflow_to_sample_mapping"]
        return list(zip(owners, enc.encodings))  # one row per window of a text, a text's windows in turn

    def _take(self, out, j, enc, opts):
        return enc, out["logits"][j, :len(enc.ids)]

    def _decode(self, text, windows, opts):
        return self._entities(text, windows, opts)

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


# -- records, the command, trace ------------------------------------------------------------------
def columns(options, pipe):
    grouped = (options.get("aggregation_strategy") or "none") != "none"
    fields = [("entity_group" if grouped else "entity", c.STRING), ("score", c.FLOAT64)]
    fields += [] if grouped else [("index", c.INT64)]
    fields += [("word", c.STRING), ("start", c.INT64), ("end", c.INT64)]
    return {"entities": c.list_of(c.struct(fields))}


def record(result, options) -> dict:
    return {"entities": result}


def _arguments(p):
    p.add_argument("--aggregation", choices=list(AGGREGATIONS), default="simple",
                   help="how word pieces group into entities (default: simple)")
    p.add_argument("--stride", type=int, metavar="N", help="split long texts into windows overlapping by N tokens")


def _options(args) -> dict:
    options = {"aggregation_strategy": args.aggregation}
    if args.stride is not None:
        options["stride"] = args.stride
    return options


def _cells(rec, args) -> list:
    key = "entity_group" if args.aggregation != "none" else "entity"
    return ["; ".join(f"{e['word']}/{e[key]} {e['score']:.2f} [{e['start']}:{e['end']}]" for e in rec["entities"]) or "-"]


def _trace(out, tokens, mask, config, tokenizer) -> dict:
    """logits per token -> softmax -> the best label of every real token."""
    probs = softmax(out.logits.numpy())  # (B, T, num_labels)
    return {"token_labels": [
        [{"token": tok, "label": config.id2label[int(p.argmax())], "score": round(float(p.max()), 4)}
         for tok, p, m in zip(tokens[i], probs[i], mask[i]) if m]
        for i in range(len(tokens))]}


def _trace_lines(r) -> list:
    return [f"text {i}: " + " ".join(f"{x['token']}/{x['label']}" for x in row) for i, row in enumerate(r["token_labels"])]


TASK = Task(
    "token-classification", ("ner",), "AutoModelForTokenClassification", TokenClassificationPipeline,
    Command("ner", "label the entities in texts (token classification)",
            "Entities in each text, with character offsets. One result per input, in order.",
            "none: pass a token-classification checkpoint", _arguments, _options, _cells,
            header=lambda args: ["entities (word/label score [start:end])"]),
    columns, record, TraceStage("token-classification", "token labels: the best label of every token", _trace, _trace_lines),
    example_model="dslim/bert-base-NER")
