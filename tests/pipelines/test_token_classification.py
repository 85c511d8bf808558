"""Token classification (every aggregation strategy) against transformers' pipeline."""
import warnings

import pytest

from reference import assert_same
from task_checkpoints import LONG, NER_TEXTS, ours, reference, refused_before_work


# -- token classification ------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification(ner_dir, strategy):
    ref, pipe = reference("token-classification", ner_dir), ours("ner", ner_dir)
    kw = dict(aggregation_strategy=strategy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LONG is truncated (with our warning) as transformers truncates it
        assert_same(pipe(NER_TEXTS + [LONG], batch_size=3, **kw), ref(NER_TEXTS + [LONG], **kw))
    assert_same(pipe(NER_TEXTS[0], ignore_labels=[], **kw), ref(NER_TEXTS[0], ignore_labels=[], **kw))
    if strategy != "none":  # long texts in overlapping windows, entities merged across them
        for stride in (0, 7, 30):
            assert_same(pipe([LONG, NER_TEXTS[1]], stride=stride, **kw), ref([LONG, NER_TEXTS[1]], stride=stride, **kw))


def test_token_classification_offsets_point_into_the_text(ner_dir):
    entities = ours("ner", ner_dir)(LONG, aggregation_strategy="first", stride=10, ignore_labels=[])
    assert entities[-1]["end"] > len(LONG) - 10  # the whole text is labelled, not its first 40 tokens
    for e in entities:
        assert LONG[e["start"]:e["end"]].replace(" ", "") == e["word"].replace(" ", "") or "[UNK]" in e["word"]


def test_token_classification_bad_input(ner_dir):
    pipe = ours("ner", ner_dir)
    with pytest.warns(UserWarning, match=r"input 1 is longer than the model's 40 tokens: only its beginning"):
        pipe(["short", LONG])
    for call, error, match in [
        (lambda p: p("x", aggregation_strategy="bogus"), ValueError, "aggregation_strategy='bogus'; use one of 'none'"),
        (lambda p: p("x", aggregation_strategy="none", stride=5), ValueError, 'not "none"'),
        (lambda p: p("x", aggregation_strategy="simple", stride=40), ValueError, "stride=40 must be less than the window of 40"),
        (lambda p: p("x", aggregation_strategy="simple", stride=39), ValueError, r"stride=39 must be less than max_length=40 minus"),
        (lambda p: p("x", aggregation_strategy="simple", stride=-1), ValueError, "stride=-1"),
        (lambda p: p("x", ignore_labels="O"), TypeError, "ignore_labels must be a list"),
        (lambda p: p(["ok", 3]), TypeError, "input 1 is int"),
    ]:
        refused_before_work(pipe, call, error, match)
    assert isinstance(pipe("Zoë"), list)
