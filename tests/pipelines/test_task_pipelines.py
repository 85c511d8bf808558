"""Every pipeline task against transformers' own pipeline (4.57, PyTorch) on the same checkpoint folder.

Checkpoints are tiny (hidden 32, 2 layers) with a 40-position table, so that "longer than the model's
limit" costs little; their weights are random (LayerNorms perturbed) and written by transformers'
`save_pretrained`. Results must agree exactly in labels, tokens, words, spans and character offsets,
and within 1e-5 in scores. Bad inputs and options must raise a clear error before any model work and
leave the pipeline usable.
"""
import functools
import json
import os
import shutil
import threading
import warnings

import numpy as np
import pytest

from minibert import pipeline
from minibert.pipelines import ALIASES, TASKS, get_task
from reference import REPO, assert_same, make_checkpoint, minilm_dir, sst2_train_texts

POSITIONS = 40
BERT = dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2,
            max_position_embeddings=POSITIONS)
DISTILBERT = dict(dim=32, n_heads=4, hidden_dim=37, n_layers=2, max_position_embeddings=POSITIONS)
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]

LONG = ("Zoë Dubois flew from São Paulo to Paris with Ana Müller, then took the train to Berlin and "
        "Munich, where the Siemens team met the Café Noir owners before 東京 and 北京 called. ") * 3
TEXTS = ["I've been waiting for a HuggingFace course my whole life.", "I hate this so much!",
         "Café naïve résumé, crème brûlée à Zürich.", "東京 and 北京 are big cities", LONG, "ok"]


# -- checkpoints ---------------------------------------------------------------------------------
def uncased_tokenizer(folder, **config):
    """The real MiniLM (uncased WordPiece) tokenizer, limited to the tiny models' 40 positions."""
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(os.path.join(minilm_dir(), name), folder)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": POSITIONS,
                   "clean_up_tokenization_spaces": True, **config}, f)
    return str(folder)


@pytest.fixture(scope="module")
def cased_dir(tmp_path_factory):
    """A small cased WordPiece trained on SST-2 (and its title-cased lines), saved by transformers."""
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import BertTokenizerFast

    lines = sst2_train_texts(3000)
    corpus = lines + [line.title() for line in lines] + [LONG] * 5
    wp = BertWordPieceTokenizer(lowercase=False, strip_accents=False)
    wp.train_from_iterator(corpus, vocab_size=2000, min_frequency=2)
    cls, sep = wp.token_to_id("[CLS]"), wp.token_to_id("[SEP]")  # training leaves BERT's template unset
    wp._tokenizer.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                      special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    folder = tmp_path_factory.mktemp("cased_tokenizer")
    BertTokenizerFast(tokenizer_object=wp._tokenizer, do_lower_case=False, model_max_length=POSITIONS,
                      unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                      mask_token="[MASK]").save_pretrained(folder)
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


@pytest.fixture(scope="module")
def uncased_dir(tmp_path_factory):
    return uncased_tokenizer(tmp_path_factory.mktemp("uncased_tokenizer"))


def labels(names):
    return dict(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})


@pytest.fixture(scope="module")
def cls_dir(tmp_path_factory, uncased_dir):
    return checkpoint(tmp_path_factory, "cls", "bert", "sequence-classification", uncased_dir, seed=3,
                      **labels(["neg", "neutral", "pos"]))


@pytest.fixture(scope="module")
def nli_dir(tmp_path_factory, uncased_dir):
    return checkpoint(tmp_path_factory, "nli", "distilbert", "sequence-classification", uncased_dir, seed=4,
                      **labels(["contradiction", "neutral", "entailment"]))


@pytest.fixture(scope="module")
def mlm_dirs(tmp_path_factory, uncased_dir):
    return [checkpoint(tmp_path_factory, f"mlm_{f}", f, "masked-lm", uncased_dir, seed=5) for f in ("bert", "distilbert")]


@pytest.fixture(scope="module")
def ner_dir(tmp_path_factory, cased_dir):
    return checkpoint(tmp_path_factory, "ner", "bert", "token-classification", cased_dir, seed=6, **labels(NER_LABELS))


@pytest.fixture(scope="module")
def qa_dir(tmp_path_factory, cased_dir):
    return checkpoint(tmp_path_factory, "qa", "distilbert", "question-answering", cased_dir, seed=7)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, uncased_dir):
    return checkpoint(tmp_path_factory, "base", "bert", "model", uncased_dir, seed=8)


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


# -- the task table ------------------------------------------------------------------------------
def test_task_table():
    import transformers.pipelines as tp

    for name, task in TASKS.items():
        # transformers' names; reranking is sentence-transformers' (CrossEncoder.rank), not a transformers pipeline
        assert name in tp.SUPPORTED_TASKS or name == "rerank", name
        assert get_task(name) is task and task.pipeline_class.task == name
        assert task.cli_verb and task.trace_shows and (task.default_model or task.example_model)
    assert ALIASES == {alias: tp.TASK_ALIASES[alias] for alias in ("sentiment-analysis", "ner")}
    with pytest.raises(ValueError, match="unknown task 'summarization'; supported: text-classification"):
        get_task("summarization")
    with pytest.raises(ValueError, match="fill-mask has no offline default model: pass model="):
        pipeline("fill-mask")
    with pytest.raises(TypeError, match=r"unknown argument\(s\) colour; the task takes aggregation_strategy"):
        pipeline("ner", model="/nonexistent", colour="red")  # refused before anything is loaded


def test_table_imports_without_tensorflow():
    import subprocess
    import sys

    code = "import sys, minibert.pipelines as p; p.get_task('ner'); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": REPO})
    assert out.stdout.strip() == "False", out.stderr


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


# -- fill-mask -----------------------------------------------------------------------------------
MASKED = ["Paris is the [MASK] of France.", "The [MASK] sat on the [MASK] all day.",
          "Café [MASK] à Zürich, 東京 [MASK].", "[MASK]"]


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


# -- token classification ------------------------------------------------------------------------
NER_TEXTS = ["Zoë Dubois met Ana Müller in São Paulo.", "Angela works for Siemens in Munich 🙂 today",
             "東京 and 北京 are far from Berlin.", "no entities here at all", ""]


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


# -- question answering --------------------------------------------------------------------------
CONTEXT = "Zoë Dubois flew from São Paulo to Paris in 2019 with Ana Müller."
QUESTIONS = ["Who flew to Paris?", "When did Zoë fly?", "Where is 東京?"]


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


def test_too_long_hints_say_what_to_change(tmp_path_factory, uncased_dir):
    """A tokenizer that allows more tokens than the model has positions: truncation is on, and the hint
    names the length to pass instead of "pass truncation=True"."""
    folder = checkpoint(tmp_path_factory, "wide_tokenizer", "bert", "sequence-classification", uncased_dir)
    config = os.path.join(folder, "tokenizer_config.json")
    with open(config, encoding="utf-8") as f:
        settings = json.load(f)
    with open(config, "w", encoding="utf-8") as f:
        json.dump({**settings, "model_max_length": 512}, f)
    pipe = pipeline("text-classification", model=folder)
    for call, match in [
        (lambda p: p(LONG), r"more than the 40 this model takes; truncation is on, but to the tokenizer's "
                            r"model_max_length=512: pass max_length=40 or less"),
        (lambda p: p(LONG, max_length=100), r"truncation is on, but to max_length=100: pass max_length=40 or less"),
        (lambda p: p(LONG, truncation=False), r"more than the 40 this model takes; pass truncation=True$"),
    ]:
        refused_before_work(pipe, call, ValueError, match)
    assert pipe(LONG, max_length=40)[0]["label"]
    mlm = ours("fill-mask", checkpoint(tmp_path_factory, "wide_mlm", "bert", "masked-lm", folder))
    refused_before_work(mlm, lambda p: p(LONG + " [MASK]", tokenizer_kwargs={"truncation": True}), ValueError,
                        r"truncation is on, but to the tokenizer's model_max_length=512: pass "
                        r"tokenizer_kwargs=\{'truncation': True, 'max_length': 40\}")


# -- feature extraction --------------------------------------------------------------------------
def test_feature_extraction(base_dir):
    ref, pipe = reference("feature-extraction", base_dir), ours("feature-extraction", base_dir)
    want, got = ref(TEXTS, truncation=True), pipe(TEXTS, batch_size=2)
    assert [np.asarray(g).shape for g in got] == [np.asarray(w).shape for w in want]  # (1, T, hidden) each
    assert max(np.abs(np.asarray(g) - np.asarray(w)).max() for g, w in zip(got, want)) <= 1e-4
    one = pipe(TEXTS[0], return_tensors=True)
    assert one.shape == tuple(ref(TEXTS[0], return_tensors=True).shape) == (1, 16, 32)
    assert np.abs(one - np.asarray(got[0])).max() <= 1e-5  # alone or in a batch: the same vectors
    pooled = pipe(TEXTS, pooling="mean", normalize=True)
    assert pooled.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(pooled[1], np.asarray(got[1])[0].mean(0) / np.linalg.norm(np.asarray(got[1])[0].mean(0)), atol=1e-6)


# -- what every pipeline keeps: streaming, batching, threads -------------------------------------
def test_streaming_batching_and_threads(ner_dir, qa_dir, mlm_dirs, nli_dir):
    cases = [
        (ours("ner", ner_dir), NER_TEXTS + [LONG], dict(aggregation_strategy="simple", stride=5)),
        (ours("question-answering", qa_dir), [{"question": q, "context": LONG} for q in QUESTIONS], {}),
        (ours("fill-mask", mlm_dirs[0]), MASKED, {}),
        (ours("zero-shot-classification", nli_dir), TEXTS, dict(candidate_labels=["a", "b"])),
    ]
    for pipe, inputs, kw in cases:
        want = pipe(inputs, **kw)
        stream = pipe(iter(inputs), **kw)
        assert not isinstance(stream, list)
        assert_same(list(stream), want)  # a generator in, a generator of the same results out
        for size in (1, 3):  # batching is invisible
            assert_same(pipe(inputs, batch_size=size, **kw), want)
        results, errors = {}, []

        def work(k):
            try:
                results[k] = pipe(inputs[k % len(inputs):] + inputs, **kw)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for k, res in results.items():
            assert_same(res, want[k % len(inputs):] + want)


def test_a_stream_gives_each_result_once_it_and_those_before_it_are_done(cls_dir):
    """Inside a window, batches run shortest first; a result comes out as soon as it and every input before
    it have run, not when the whole window has (so `minibert classify | head -3` answers at once)."""
    pipe = ours("text-classification", cls_dir)
    counting = Counting(pipe.model)
    probe = type(pipe)(counting, pipe.tokenizer, batch_size=2, **pipe.options)
    # windows of 2, then 4 inputs; in the second, inputs 2 and 3 are the shortest: its first batch
    texts = ["a b c d e f", "a b c d e f g", "x", "y", "a much longer text than the others, " * 3, LONG[:200]]
    forwards_at = []
    for result in probe(iter(texts)):
        forwards_at.append(counting.calls)
    assert forwards_at == [1, 1, 2, 2, 3, 3]
    assert_same(list(pipe(iter(texts))), pipe(texts))


# -- a byte-level BPE family: RoBERTa ------------------------------------------------------------
@pytest.fixture(scope="module")
def roberta_tokenizer_dir(tmp_path_factory):
    """A small byte-level BPE (RoBERTa's kind: no "##" marks, spaces inside tokens), saved by transformers."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaTokenizerFast

    lines = sst2_train_texts(3000)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(lines + [line.title() for line in lines] + [LONG] * 5, vocab_size=1500,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe._tokenizer.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    folder = tmp_path_factory.mktemp("roberta_tokenizer")
    RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, model_max_length=POSITIONS).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("head", ["token-classification", "question-answering", "masked-lm"])
def test_roberta(tmp_path_factory, roberta_tokenizer_dir, head):
    config = dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2,
                  max_position_embeddings=POSITIONS + 2, **(labels(NER_LABELS) if head == "token-classification" else {}))
    folder = tmp_path_factory.mktemp(f"roberta_{head}")
    make_checkpoint(folder, "roberta", head, seed=11, vocab_size=1500, **config)
    for file in os.listdir(roberta_tokenizer_dir):
        shutil.copy(os.path.join(roberta_tokenizer_dir, file), folder)
    task = {"masked-lm": "fill-mask"}.get(head, head)
    ref, pipe = reference(task, str(folder)), ours(task, str(folder))
    if head == "token-classification":
        for kw in (dict(aggregation_strategy="simple", stride=6), dict(aggregation_strategy="none")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert_same(pipe(NER_TEXTS[:3] + [LONG], **kw), ref(NER_TEXTS[:3] + [LONG], **kw))
    elif head == "question-answering":
        kw = dict(top_k=2, handle_impossible_answer=True)
        assert_same(pipe(question=QUESTIONS, context=LONG, **kw), ref(question=QUESTIONS, context=LONG, **kw))
    else:
        texts = [t.replace("[MASK]", "<mask>") for t in MASKED]
        assert_same(pipe(texts, top_k=3), ref(texts, top_k=3))
