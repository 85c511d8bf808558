"""The task table, and what every pipeline keeps: streaming, batching, threads, the too-long hints; RoBERTa's
byte-level BPE through the tasks whose code reads offsets and special tokens."""
import json
import os
import shutil
import threading
import warnings

import pytest

from minibert import pipeline
from minibert.pipelines import ALIASES, TASKS, get_task
from reference import REPO, assert_same, make_checkpoint, sst2_train_texts
from task_checkpoints import Counting, LONG, MASKED, NER_LABELS, NER_TEXTS, POSITIONS, QUESTIONS, TEXTS, checkpoint, labels, ours, reference, refused_before_work


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
