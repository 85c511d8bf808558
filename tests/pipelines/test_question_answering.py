"""Question answering (windows, top_k, impossible answers) against transformers' pipeline."""
import threading

import pytest

from reference import assert_same
from task_checkpoints import CONTEXT, LONG, QUESTIONS, ours, reference, refused_before_work


# -- question answering --------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{}, dict(top_k=3), dict(max_answer_len=2, top_k=2), dict(handle_impossible_answer=True),
                                    dict(align_to_words=False, top_k=2), dict(doc_stride=5, top_k=2),
                                    dict(max_seq_len=30, doc_stride=12)])
def test_question_answering(qa_dir, kwargs):
    ref, pipe = reference("question-answering", qa_dir), ours("question-answering", qa_dir)
    # a context far beyond 40 tokens: read in windows
    assert_same(pipe(question=QUESTIONS[0], context=LONG, **kwargs), ref(question=QUESTIONS[0], context=LONG, **kwargs))
    assert_same(pipe(question=QUESTIONS, context=CONTEXT, **kwargs), ref(question=QUESTIONS, context=CONTEXT, **kwargs))
    batch = [{"question": q, "context": c} for q, c in zip(QUESTIONS, [LONG, CONTEXT, "東京 is in Japan, 北京 in China."])]
    assert_same(pipe(batch, batch_size=4, **kwargs), ref(batch, **kwargs))
    assert_same(pipe(batch[2], **kwargs), ref(batch[2], **kwargs))
    assert_same(pipe(QUESTIONS[1], CONTEXT, **kwargs), ref(QUESTIONS[1], CONTEXT, **kwargs))


def test_question_answering_bad_input(qa_dir):
    pipe = ours("question-answering", qa_dir)
    for call, error, match in [
        (lambda p: p(question="Who?", context=""), ValueError, "input 0: the context is empty"),
        (lambda p: p([{"question": "Who?", "context": "Zoë."}, {"question": "Who?"}]), ValueError,
         r"input 1 must be a \{\"question\": ..., \"context\": ...\} dict, got keys \['question'\]"),
        (lambda p: p(question=["a", "b"], context=["c"]), ValueError, "2 questions but 1 contexts"),
        (lambda p: p(question="Who?", context=CONTEXT, top_k=0), ValueError, "top_k=0"),
        (lambda p: p(question="Who?", context=CONTEXT, max_answer_len=0), ValueError, "max_answer_len=0"),
        (lambda p: p(question="Who?", context=CONTEXT, doc_stride=41), ValueError, r"doc_stride \(41\) is larger than max_seq_len \(40\)"),
        (lambda p: p(question="Who " * 30 + "?", context=LONG), ValueError,
         r"input 0: the question takes \d+ tokens, leaving \d+ of max_seq_len=40 for each window"),
        (lambda p: p(question="Who?"), TypeError, "expected question= and context="),
    ]:
        refused_before_work(pipe, call, error, match)
    assert set(pipe(question="Who?", context=CONTEXT)) == {"score", "start", "end", "answer"}


def test_question_answering_top_k_past_the_possible_spans(qa_dir):
    """top_k=10**9 gives every span that can be an answer, as transformers does less the zero-scored spans it
    pads with (spans that end before they start), and on a context of thousands of tokens it finishes in
    seconds, not the hours of comparing every one of the T x T pairs of every window with every other."""
    ref, pipe = reference("question-answering", qa_dir), ours("question-answering", qa_dir)
    for question in QUESTIONS[:2]:
        want = [a for a in ref(question=question, context=CONTEXT, top_k=10**9) if a["score"] > 0]
        assert_same(pipe(question=question, context=CONTEXT, top_k=10**9), want)
    long_context = " ".join([LONG] * 16)
    assert len(pipe.tokenizer.tokenize(long_context)) > 3000
    done = []
    worker = threading.Thread(target=lambda: done.append(pipe(question="Who flew?", context=long_context, top_k=10**9)),
                              daemon=True)
    worker.start()
    worker.join(timeout=120)  # a bound for a hang, not a speed check: it takes seconds
    assert done, "top_k=10**9 on a long context did not finish in 2 minutes"
    answers = done[0]
    assert all(a["score"] > 0 for a in answers)
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
    assert len({a["answer"].lower() for a in answers}) == len(answers)  # one entry per answer text


def test_question_answering_long_question_is_refused(qa_dir):
    """Every window repeats the question: a long one leaves each window a few context tokens and a long
    context thousands of windows. Past max_question_len (64 tokens, transformers' default) it is refused."""
    pipe = ours("question-answering", qa_dir)
    n = len(pipe.tokenizer.tokenize("Who " * 70 + "?"))
    refused_before_work(pipe, lambda p: p(question="Who " * 70 + "?", context=LONG), ValueError,
                        rf"input 0: the question is {n} tokens long, more than max_question_len=64; ask a shorter "
                        "question, or raise max_question_len")
    refused_before_work(pipe, lambda p: p(question="Who flew from Paris?", context=LONG, max_question_len=3),
                        ValueError, "more than max_question_len=3")
    refused_before_work(pipe, lambda p: p(question="Who?", context=LONG, max_question_len=0), ValueError,
                        "max_question_len=0")
    assert set(pipe(question="Who?", context=CONTEXT, max_question_len=None)) == {"score", "start", "end", "answer"}
