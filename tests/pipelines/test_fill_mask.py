"""Fill-mask against transformers' pipeline."""

import pytest

from reference import assert_same
from task_checkpoints import LONG, MASKED, ours, reference, refused_before_work


# -- fill-mask -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{}, dict(top_k=3), dict(targets=["capital", "city", "dog", "the"], top_k=2),
                                    dict(targets="city", top_k=4), dict(top_k=12)])
def test_fill_mask(mlm_dirs, kwargs):
    for folder in mlm_dirs:
        ref, pipe = reference("fill-mask", folder), ours("fill-mask", folder)
        for inputs in (MASKED, MASKED[0], MASKED[1], MASKED[:1]):  # one mask, several, a list, a list of one
            assert_same(pipe(inputs, batch_size=2, **kwargs), ref(inputs, **kwargs))


def test_fill_mask_targets_outside_the_vocabulary(mlm_dirs):
    """As transformers: the first word piece stands in, with a warning."""
    ref, pipe = reference("fill-mask", mlm_dirs[0]), ours("fill-mask", mlm_dirs[0])
    with pytest.warns(UserWarning, match="'Paris' is not in the model's vocabulary; using its first word piece 'paris'"):
        got = pipe(MASKED[0], targets=["Paris", "capitalistically", "dog"])
    assert_same(got, ref(MASKED[0], targets=["Paris", "capitalistically", "dog"]))


def test_fill_mask_long_text(mlm_dirs):
    text = "The [MASK] is here. " + LONG
    ref, pipe = reference("fill-mask", mlm_dirs[1]), ours("fill-mask", mlm_dirs[1])
    kw = dict(tokenizer_kwargs={"truncation": True})
    assert_same(pipe([text, MASKED[1]], **kw), ref([text, MASKED[1]], **kw))
    refused_before_work(pipe, lambda p: p([MASKED[0], text]), ValueError,
                        r"input 1 is \d+ tokens long, more than the 40 this model takes.*tokenizer_kwargs")
    refused_before_work(pipe, lambda p: p([MASKED[0], LONG + " [MASK]"], **kw), ValueError,
                        r"input 1 has no mask token \[MASK\] \(truncation cut it off\)")


def test_fill_mask_bad_input(mlm_dirs):
    pipe = ours("fill-mask", mlm_dirs[0])
    for call, error, match in [
        (lambda p: p(["a [MASK].", "no mask here"]), ValueError, r"input 1 has no mask token \[MASK\]"),
        (lambda p: list(p(iter(["a [MASK]."] * 3 + ["nothing"]))), ValueError, r"input 3 has no mask token"),
        (lambda p: p("a [MASK].", top_k=0), ValueError, "top_k=0"),
        (lambda p: p("a [MASK].", targets=[]), ValueError, "none of them can be scored"),
        (lambda p: p("a [MASK].", targets=[3]), TypeError, "targets must be a word or a list of words"),
        (lambda p: p("a [MASK].", tokenizer_kwargs={"padding": True}), ValueError, "tokenizer_kwargs takes"),
    ]:
        refused_before_work(pipe, call, error, match)
    with pytest.warns(UserWarning, match="has no tokens; ignoring it"):
        with pytest.raises(ValueError, match="none of them can be scored"):
            pipe("a [MASK].", targets=[""])
    assert len(pipe("a [MASK].")) == 5


def test_fill_mask_top_k_past_the_vocabulary(mlm_dirs):
    """Every candidate of every mask is a decoded sequence each: top_k past the vocabulary is refused before
    any work (transformers fails there too); the whole vocabulary gives each token once, best first."""
    pipe = ours("fill-mask", mlm_dirs[0])
    vocab = pipe.model.config.vocab_size
    refused_before_work(pipe, lambda p: p(" ".join(["[MASK]"] * 30), top_k=10**9), ValueError,
                        rf"top_k=1000000000 is more than the {vocab} tokens of the model's vocabulary")
    every = pipe("Paris is the [MASK] of France.", top_k=vocab)
    assert sorted(c["token"] for c in every) == list(range(vocab))
    assert_same(every[:4], pipe("Paris is the [MASK] of France.", top_k=4))
    assert len(pipe("a [MASK].", targets=["city", "dog"], top_k=10**9)) == 2  # cut to the targets, as transformers
