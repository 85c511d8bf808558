"""Zero-shot classification against transformers' pipeline."""

import pytest

from minibert import pipeline
from reference import assert_same
from task_checkpoints import TEXTS, checkpoint, labels, reference, ours, refused_before_work


# -- zero-shot classification --------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    dict(candidate_labels=["sports", "politics", "cooking"]),
    dict(candidate_labels="sports, politics,  travel ,", multi_label=True),
    dict(candidate_labels=["travel"]),
    dict(candidate_labels=["Reisen", "Küche", "旅行"], hypothesis_template="Das Thema ist {}."),
])
def test_zero_shot(nli_dir, kwargs):
    ref, pipe = reference("zero-shot-classification", nli_dir), ours("zero-shot-classification", nli_dir)
    assert_same(pipe(TEXTS, **kwargs), ref(TEXTS, **kwargs))  # LONG is truncated, never the hypothesis
    assert_same(pipe(TEXTS[2], **kwargs), ref(TEXTS[2], **kwargs))
    labels_ = kwargs.pop("candidate_labels")  # also as the second positional argument
    assert_same(pipe(TEXTS[3], labels_, **kwargs), ref(TEXTS[3], labels_, **kwargs))


def test_zero_shot_entailment_first(tmp_path_factory, uncased_dir):
    """With entailment at index 0, transformers scores multi_label against the last label: so do we."""
    folder = checkpoint(tmp_path_factory, "nli0", "bert", "sequence-classification", uncased_dir, seed=10,
                        **labels(["ENTAILMENT", "neutral", "contradiction"]))
    ref, pipe = reference("zero-shot-classification", folder), ours("zero-shot-classification", folder)
    for multi in (False, True):
        assert_same(pipe(TEXTS[:3], ["a", "b", "c"], multi_label=multi), ref(TEXTS[:3], ["a", "b", "c"], multi_label=multi))


def test_zero_shot_bad_input(nli_dir, cls_dir):
    pipe = ours("zero-shot-classification", nli_dir)
    for call, error, match in [
        (lambda p: p("text", candidate_labels=[]), ValueError, "candidate_labels is empty"),
        (lambda p: p("text", candidate_labels=" , "), ValueError, "candidate_labels is empty"),
        (lambda p: p("text"), TypeError, "needs candidate_labels"),
        (lambda p: p("text", candidate_labels=5), TypeError, "candidate_labels must be a list of strings"),
        (lambda p: p("text", candidate_labels=["a", 3]), TypeError, "candidate_labels must be a list of strings"),
        (lambda p: p("text", ["a"], hypothesis_template="No slot."), ValueError, "has no {} where the label goes"),
        (lambda p: p("text", ["a"], hypothesis_template="{:>9999999999}"), ValueError,
         r"use \{\} alone where the label goes, not \{:>9999999999\}"),
        (lambda p: p("text", ["a"], hypothesis_template="{0.__class__}"), ValueError, r"use \{\} alone"),
        (lambda p: p(["fine", ""], ["a"]), ValueError, "input 1 is an empty text"),
        (lambda p: p("text", ["word " * 40]), ValueError, r"the hypothesis for label .* takes \d+ of the 40 tokens"),
        (lambda p: p("text", ["a"], multi_label="yes"), TypeError, "multi_label must be True or False"),
    ]:
        refused_before_work(pipe, call, error, match)
    with pytest.raises(ValueError, match=r"needs an NLI model whose labels include entailment; this model's labels "
                                         r"are \['neg', 'neutral', 'pos'\]"):
        pipeline("zero-shot-classification", model=cls_dir)
    assert pipe("text", ["a", "b"])["labels"]
