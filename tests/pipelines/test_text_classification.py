"""Text and pair classification against transformers' pipeline."""

import pytest

from minibert import pipeline
from reference import assert_same
from task_checkpoints import LONG, TEXTS, checkpoint, labels, reference, ours, refused_before_work


# -- text classification -------------------------------------------------------------------------
PAIRS = [{"text": "A man is eating.", "text_pair": "Someone eats food."},
         {"text": LONG, "text_pair": "Zoë flew to Paris."}, {"text": "Only a text, no pair."}]


@pytest.mark.parametrize("kwargs", [{}, dict(top_k=None), dict(top_k=2), dict(top_k=1), dict(function_to_apply="none"),
                                    dict(function_to_apply="SIGMOID", top_k=None), dict(function_to_apply="softmax")])
def test_text_classification(cls_dir, kwargs):
    ref, pipe = reference("text-classification", cls_dir), ours("text-classification", cls_dir)
    for inputs in (TEXTS, TEXTS[0], PAIRS[0], PAIRS):
        assert_same(pipe(inputs, batch_size=3, **kwargs), ref(inputs, truncation=True, **kwargs))


def test_top_k_given_at_construction(cls_dir):
    """transformers then wraps a single text's sorted list in another list: so do we."""
    import transformers

    ref = transformers.pipeline("text-classification", model=cls_dir, top_k=2)
    pipe = pipeline("text-classification", model=ours("text-classification", cls_dir).model,
                    tokenizer=cls_dir, top_k=2)
    assert_same(pipe(TEXTS[0]), ref(TEXTS[0]))
    assert_same(pipe(TEXTS[:2]), ref(TEXTS[:2]))


@pytest.mark.parametrize("config", [dict(problem_type="multi_label_classification", **labels("abcd")),
                                    dict(num_labels=1), dict(num_labels=1, problem_type="regression")])
def test_default_function_follows_the_checkpoint(tmp_path_factory, uncased_dir, config):
    folder = checkpoint(tmp_path_factory, "cls_kind", "bert", "sequence-classification", uncased_dir, seed=9, **config)
    pipe, ref = ours("text-classification", folder), reference("text-classification", folder)
    assert_same(pipe(TEXTS[:4], top_k=None), ref(TEXTS[:4], top_k=None))
    if config.get("problem_type") == "multi_label_classification":
        assert sum(r["score"] for r in pipe(TEXTS[0], top_k=None)) > 1.01  # sigmoid: not a distribution


def test_text_classification_bad_input(cls_dir):
    pipe = ours("text-classification", cls_dir)
    want = pipe(TEXTS)
    for kwargs, error, match in [
        (dict(function_to_apply="bogus"), ValueError, r"function_to_apply='bogus'; use one of 'softmax'"),
        (dict(top_k=-1), ValueError, r"top_k=-1; it must be at least 1; None means all labels"),
        (dict(top_k=0), ValueError, r"top_k=0"), (dict(top_k="2"), TypeError, "top_k must be an int"),
        (dict(batch_size=-3), ValueError, r"batch_size=-3; it must be at least 1"),
        (dict(max_length=-5), ValueError, r"max_length=-5"), (dict(colour=1), TypeError, r"unknown argument\(s\) colour"),
    ]:
        refused_before_work(pipe, lambda p: p(TEXTS, **kwargs), error, match)
    refused_before_work(pipe, lambda p: p(TEXTS, truncation=False), ValueError,
                        r"input 4 is \d+ tokens long, more than the 40 this model takes; pass truncation=True")
    refused_before_work(pipe, lambda p: p(["fine", "bad \ud800 x"]), ValueError, r"input 1 is not valid Unicode")
    refused_before_work(pipe, lambda p: p(["fine", b"x"]), TypeError, r"input 1 is bytes.*decode it first")
    refused_before_work(pipe, lambda p: p([["a", "b"]]), ValueError, 'input 0 is a list; to classify a text pair, send a dict')
    refused_before_work(pipe, lambda p: list(p(iter(["a"] * 3 + [{"text": 3}]))), TypeError, r'input 3 \["text"\] is int')
    for bad in (dict(batch_size=-3), dict(batch_size=0), dict(top_k=-1), dict(device="cuda:7")):
        with pytest.raises((ValueError, TypeError)):
            pipeline("sentiment-analysis", model=cls_dir, **bad)
    assert_same(pipe(TEXTS), want)  # still usable, same results
