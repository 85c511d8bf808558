"""Question answering: the span of a context that answers a question, read in windows over long contexts."""
from __future__ import annotations

import numpy as np

from ..textio import read_document
from ..tokenizer import check_text
from . import columns as c
from .base import Command, Pipeline, Task, TraceStage, bool_option, count, int_option, softmax


class QuestionAnsweringPipeline(Pipeline):
    """The span of a context that answers a question (transformers 4.57's `question_answering.py`).

    `pipe(question="Who?", context="...")` (or `pipe({"question": ..., "context": ...})`, lists of
    either) -> {"score", "start", "end", "answer"}, `start`/`end` character offsets into the context;
    `top_k=k` gives up to k answers, best first (a list when more than one). A context longer than
    `max_seq_len` tokens (default min(model limit, 384)) is read in windows overlapping by `doc_stride`
    tokens (default min(max_seq_len // 2, 128)); the best spans of all windows compete, the same answer
    text found twice adding its scores. Spans run up to `max_answer_len` tokens (15);
    `handle_impossible_answer=True` lets the empty answer compete (scored by [CLS]);
    `align_to_words` (True) widens spans to whole words. A question longer than `max_question_len` tokens
    (64, transformers' default) is refused: every window repeats the question, so a long one leaves each
    window a few new tokens of the context and a long context thousands of windows (None: no limit but the window's).
    """

    task = "question-answering"
    OPTIONS = {"top_k": 1, "doc_stride": None, "max_answer_len": 15, "max_seq_len": None,
               "max_question_len": 64, "handle_impossible_answer": False, "align_to_words": True, "batch_size": None}
    OUTPUTS = ("start_logits", "end_logits")
    INPUT = ('question= and context= (strings or lists), a {"question": ..., "context": ...} dict, '
             'a list of them or an iterator of them')

    def _too_long_hint(self, opts, positions):
        return f"; its windows are max_seq_len={opts['max_seq_len']} tokens: pass max_seq_len={positions} or less"

    def __call__(self, *args, **kwargs):
        question, context = kwargs.pop("question", None), kwargs.pop("context", None)
        if args and (question is not None or context is not None):
            raise TypeError("question-answering pipeline: give the inputs either positionally or as question=/context=")
        if len(args) == 2 and all(isinstance(a, str) for a in args):
            inputs = [{"question": args[0], "context": args[1]}]
        elif len(args) == 1:
            inputs = args[0]
        elif args:
            inputs = list(args)
        elif question is not None and context is not None:
            inputs = self._from_lists(question, context)
        else:
            raise TypeError(f"question-answering pipeline: expected {self.INPUT}")
        if isinstance(inputs, dict):
            inputs = [inputs]
        return super().__call__(inputs, **kwargs)

    @staticmethod
    def _from_lists(question, context) -> list[dict]:
        if isinstance(question, str) and isinstance(context, str):
            return [{"question": question, "context": context}]
        if isinstance(question, list) and isinstance(context, str):
            return [{"question": q, "context": context} for q in question]
        if isinstance(question, list) and isinstance(context, list):
            if len(question) != len(context):
                raise ValueError(f"{len(question)} questions but {len(context)} contexts: give one context per "
                                 "question, or one context for all")
            return [{"question": q, "context": c} for q, c in zip(question, context)]
        raise TypeError(f"question must be a string or a list, and context a string or a list as long, got "
                        f"{type(question).__name__} and {type(context).__name__}")

    def _items(self, inputs):
        items, shape = super()._items(inputs)
        return items, ("one" if len(items) == 1 else "list")  # one example: its result itself, as transformers

    def check_input(self, x, i=0):
        if not isinstance(x, dict) or set(x) != {"question", "context"}:
            got = f"keys {sorted(x)}" if isinstance(x, dict) else type(x).__name__
            raise ValueError(f'input {i} must be a {{"question": ..., "context": ...}} dict, got {got}')
        for key in ("question", "context"):
            if x[key] is None:
                raise ValueError(f"input {i}: the {key} is None")
            check_text(x[key], f"input {i} {key}")
            if not x[key]:
                raise ValueError(f"input {i}: the {key} is empty")
        return x["question"], x["context"]

    def _sanitize(self, opts, call):
        opts["top_k"] = int_option("top_k", opts["top_k"], 1)
        opts["max_answer_len"] = int_option("max_answer_len", opts["max_answer_len"], 1)
        max_seq_len = int_option("max_seq_len", opts["max_seq_len"], 1, "min(model_max_length, 384)")
        opts["max_seq_len"] = max_seq_len = max_seq_len or min(self.max_length or self.tokenizer.model_max_length, 384)
        stride = int_option("doc_stride", opts["doc_stride"], 0, "min(max_seq_len // 2, 128)")
        opts["doc_stride"] = stride = min(max_seq_len // 2, 128) if stride is None else stride
        if stride > max_seq_len:
            raise ValueError(f"doc_stride ({stride}) is larger than max_seq_len ({max_seq_len})")
        opts["max_question_len"] = int_option("max_question_len", opts["max_question_len"], 1, "no limit")
        opts["handle_impossible_answer"] = bool_option("handle_impossible_answer", opts["handle_impossible_answer"])
        opts["align_to_words"] = bool_option("align_to_words", opts["align_to_words"])
        return opts

    def _encode(self, items, opts, first):
        kw = dict(truncation="only_second", max_length=opts["max_seq_len"], stride=opts["doc_stride"],
                  return_token_type_ids=True, return_overflowing_tokens=True, return_offsets_mapping=True,
                  return_special_tokens_mask=True)
        questions, contexts = [q for q, _ in items], [c for _, c in items]
        limit = opts["max_question_len"]
        if limit is not None:
            for k, n in enumerate(self._question_lengths(questions)):
                if n > limit:
                    raise ValueError(f"input {first + k}: the question is {n} tokens long, more than "
                                     f"max_question_len={limit}; ask a shorter question, or raise max_question_len")
        try:
            enc = self.tokenizer(questions, contexts, **kw)
        except ValueError:
            self._explain_window(questions, opts, first)
            raise
        return list(zip(enc["overflow_to_sample_mapping"], enc.encodings))  # one row per window of a context

    def _question_lengths(self, questions: list) -> list[int]:
        enc = self.tokenizer(questions, add_special_tokens=False, return_attention_mask=False,
                             return_token_type_ids=False)
        return [len(ids) for ids in enc["input_ids"]]

    def _take(self, out, j, enc, opts):
        return enc, out["start_logits"][j, :len(enc.ids)], out["end_logits"][j, :len(enc.ids)]

    def _decode(self, item, windows, opts):
        return self._answers(item[1], windows, opts)

    def _explain_window(self, questions, opts, first):
        max_seq_len, stride = opts["max_seq_len"], opts["doc_stride"]
        for k, q in enumerate(questions):
            n = len(self.tokenizer.tokenize(q))
            room = max_seq_len - n - self.tokenizer.num_special_tokens_to_add(pair=True)
            if room <= stride:
                raise ValueError(f"input {first + k}: the question takes {n} tokens, leaving {max(room, 0)} of "
                                 f"max_seq_len={max_seq_len} for each window of the context, not more than "
                                 f"doc_stride={stride}; ask a shorter question, or lower doc_stride")

    def _answers(self, context: str, windows: list, opts: dict):
        top_k, align = opts["top_k"], opts["align_to_words"]
        min_null_score = 1000000  # large and positive: beaten by any window's [CLS] score
        answers, by_text = [], {}  # the same text (any case) found again adds its score to the first one's
        for enc, start, end in windows:
            ids = np.array(enc.ids)
            p_mask = np.array([[s != 1 for s in enc.sequence_ids]], dtype=np.int64)  # (1, T): 1 = not context
            p_mask[0, ids == self.tokenizer.cls_token_id] = 0  # [CLS] stands for "no answer"
            starts, ends, scores, min_null_score = select_starts_ends(
                start[None], end[None], p_mask, np.ones_like(p_mask), min_null_score,
                top_k * 2 + 10 if align else top_k,  # extra candidates: some merge when aligned to words
                opts["handle_impossible_answer"], opts["max_answer_len"])
            for s, e, score in zip(starts, ends, scores):
                begin, finish = _char_span(enc, int(s), int(e), align)
                text = context[begin:finish]
                same = by_text.get(text.lower())
                if same is not None:
                    same["score"] += score.item()
                else:
                    answers.append({"score": score.item(), "start": begin, "end": finish, "answer": text})
                    by_text[text.lower()] = answers[-1]
        if opts["handle_impossible_answer"]:
            answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        return answers[0] if len(answers) == 1 else answers


def _char_span(enc, s: int, e: int, align_to_words: bool) -> tuple[int, int]:
    """Characters of the context from token s to token e, widened to whole words when asked."""
    if align_to_words:
        try:
            start_word, end_word = enc.token_to_word(s), enc.token_to_word(e)
            return enc.word_to_chars(start_word, sequence_index=1)[0], enc.word_to_chars(end_word, sequence_index=1)[1]
        except Exception:  # [CLS] (the empty answer) has no word
            pass
    return enc.offsets[s][0], enc.offsets[e][1]


def select_starts_ends(start, end, p_mask, attention_mask, min_null_score=1000000, top_k=1,
                       handle_impossible_answer=False, max_answer_len=15):
    """transformers' rule: start and end probabilities over the allowed tokens, then the best spans.

    start, end: (1, T) logits; p_mask: (1, T), 1 where no answer may be. Returns (starts, ends, scores,
    min_null_score) with the empty answer's score ([CLS] start x [CLS] end) folded into min_null_score.
    """
    undesired_tokens = np.abs(np.array(p_mask) - 1) & attention_mask  # 1 where an answer may be
    undesired_tokens_mask = undesired_tokens == 0.0
    start = np.where(undesired_tokens_mask, -10000.0, start)
    end = np.where(undesired_tokens_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0  # [CLS] is never a span of its own
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def decode_spans(start, end, topk: int, max_answer_len: int, undesired_tokens):
    """The topk (start, end) token pairs by start x end probability, end >= start, at most max_answer_len long."""
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))  # (1, T, 1) @ (1, 1, T) -> (1, T, T)
    candidates = np.tril(np.triu(outer), max_answer_len - 1)  # zero where end < start or too long
    scores_flat = candidates.flatten()
    # At most the spans that can be answers: past them transformers pads with zero-scored spans that end
    # before they start, and a huge top_k would ask for every one of the T x T pairs of every window.
    topk = min(topk, max(int(np.count_nonzero(scores_flat)), 1))
    if topk == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) < topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    # As transformers: nonzero() of the (1, T) mask also holds the row index 0, so token 0 always passes.
    allowed = undesired_tokens.nonzero()
    desired_spans = np.isin(starts, allowed) & np.isin(ends, allowed)
    starts, ends = starts[desired_spans], ends[desired_spans]
    return starts, ends, candidates[0, starts, ends]


# -- records, the command, trace ------------------------------------------------------------------
_SPAN = ("score", "start", "end", "answer")


def columns(options, pipe):
    fields = list(zip(_SPAN, (c.FLOAT64, c.INT64, c.INT64, c.STRING)))
    types = dict(fields)
    if options.get("top_k"):  # as `minibert qa --top-k K` writes them: the K best spans, best first
        types["answers"] = c.list_of(c.struct(fields))
    return types


def record(result, options) -> dict:
    """The best span's fields, and every span asked for under `answers`."""
    ranked = result if isinstance(result, list) else [result]
    return {**ranked[0], "answers": ranked}


def _arguments(p):
    p.add_argument("--context", metavar="FILE", help="the text answers come from (- for stdin)")
    p.add_argument("--top-k", type=count, metavar="K", help="the K best answers per question")
    p.add_argument("--doc-stride", type=count, metavar="N", help="overlap of the windows over a long context")
    p.add_argument("--max-question-len", type=count, metavar="N", help="refuse questions longer than N tokens (default 64)")


def _options(args) -> dict:
    if getattr(args, "input", None) and args.context:  # a dataset: each row has its question and its context
        raise ValueError("with --input, each row's context comes from its --pair-column (default: context), "
                         "not --context")
    options = {"top_k": args.top_k} if args.top_k else {}
    if args.doc_stride:
        options["doc_stride"] = args.doc_stride
    if args.max_question_len:
        options["max_question_len"] = args.max_question_len
    return options


def _cells(rec, args) -> list:
    """The best span; with --top-k, every span asked for, best first, joined by " | " as fill-mask's candidates."""
    spans = rec.get("answers") or [rec]
    return [" | ".join(a["answer"] for a in spans), " | ".join(f"{a['score']:.4f}" for a in spans),
            " | ".join(f"{a['start']}:{a['end']}" for a in spans)]


def _make_input(args):
    if args.context is None:
        raise ValueError("qa needs --context FILE (the text the answers come from; - for stdin)")
    context = read_document(args.context, "--context")
    return lambda question: {"question": question, "context": context}


def _trace(out, tokens, mask, config, tokenizer) -> dict:
    """start and end logits -> the best span (start <= end) over real tokens, with its probability."""
    spans = []
    for i in range(len(tokens)):
        real = mask[i].astype(bool)
        start = softmax(np.where(real, out.start_logits.numpy()[i], -np.inf))  # (T,)
        end = softmax(np.where(real, out.end_logits.numpy()[i], -np.inf))
        scores = np.triu(start[:, None] * end[None, :])  # (T, T): start <= end
        s, e = np.unravel_index(int(scores.argmax()), scores.shape)
        spans.append({"start": int(s), "end": int(e), "score": round(float(scores[s, e]), 4),
                      "tokens": tokens[i][s:e + 1]})
    return {"spans": spans}


def _trace_lines(r) -> list:
    return [f"text {i}: best span tokens {span['start']}..{span['end']} {' '.join(span['tokens'])!r} "
            f"(start x end probability {span['score']})" for i, span in enumerate(r["spans"])]


TASK = Task(
    "question-answering", (), "AutoModelForQuestionAnswering", QuestionAnsweringPipeline,
    Command("qa", "answer questions from a context (extractive QA)",
            "Each TEXT (or line) is a question; answers are spans of the --context file. One result per input, "
            "in order.", "none: pass a question-answering checkpoint", _arguments, _options,
            cells=_cells,
            header=lambda args: ["answers, best first" if args.top_k and args.top_k > 1 else "answer", "score", "span"], make_input=_make_input, input_name="question"),
    columns, record, TraceStage("question-answering", "answer spans: start and end logits, the best span", _trace,
                                _trace_lines),
    column="question", pair_column="context", pair_keys=("question", "context"),
    example_model="distilbert-base-cased-distilled-squad")
