"""`pipeline(task)`: text in; labels, entities, answers, filled masks or vectors out, as transformers' pipelines.

One module per task (`text_classification.py`, ...) holds everything about it: its pipeline class
(encode inputs -> run the model -> decode results, on the engine in `base.py`), how a result becomes
a flat record (JSON lines, TSV, tables, Arrow columns), its `minibert` command and what `trace`
shows after its head. `TASKS` below lists them; `pipeline()`, the command line, `trace` and Ray read
that table and nothing else about tasks. Importing this package does not import TensorFlow.

Arguments, results and their rules are those of transformers 4.57 (`transformers/pipelines/*.py`);
each class names the file it follows. Scores are Python floats (transformers' token classification
returns numpy float32). Options can be given when the pipeline is built (`pipeline(..., top_k=3)`)
or per call; bad options and bad inputs raise before any model work and leave the pipeline usable.
"""
from __future__ import annotations

import os

from ..families import family
from . import (
    feature_extraction,
    fill_mask,
    question_answering,
    rerank,
    text_classification,
    token_classification,
    zero_shot_classification,
)
from .base import DEFAULT_BATCH_SIZE, STREAM_CHUNK, Command, Pipeline, Task, TraceStage, int_option, sigmoid, softmax, tf_device
from .feature_extraction import FeatureExtractionPipeline
from .fill_mask import FillMaskPipeline
from .question_answering import QuestionAnsweringPipeline, decode_spans, select_starts_ends
from .rerank import RerankPipeline
from .text_classification import TextClassificationPipeline
from .token_classification import TokenClassificationPipeline
from .zero_shot_classification import ZeroShotClassificationPipeline

# The task table: a new task is its module above and its line here.
TASKS = {t.name: t for t in (
    text_classification.TASK,
    token_classification.TASK,
    question_answering.TASK,
    fill_mask.TASK,
    zero_shot_classification.TASK,
    feature_extraction.TASK,
    rerank.TASK,
)}
ALIASES = {alias: t.name for t in TASKS.values() for alias in t.aliases}


def get_task(name: str) -> Task:
    """The task for a name or an alias ("sentiment-analysis", "ner")."""
    task = TASKS.get(ALIASES.get(name, name)) if isinstance(name, str) else None
    if task is None:
        known = ", ".join([*TASKS, *ALIASES])
        raise ValueError(f"unknown task {name!r}; supported: {known}")
    return task


def pipeline(task: str, model=None, tokenizer=None, *, batch_size=None, max_length=None, device=None,
             model_kwargs=None, engine=None, **kwargs) -> Pipeline:
    """Build a pipeline like `transformers.pipeline`.

    task: a name from TASKS or an alias ("sentiment-analysis", "ner").
    model: a folder, a Hub id or a minibert model of the task's class. With none, text classification
    uses minibert's offline default (all-MiniLM-L6-v2 fine-tuned on SST-2) and feature extraction the
    all-MiniLM-L6-v2 encoder; other tasks need one.
    Other keyword arguments: the Hub's `revision`, `token`, `cache_dir`, `local_files_only`; the task's
    call options as defaults for every call (`top_k=3`, `aggregation_strategy="simple"`, ...);
    `model_kwargs` for `from_pretrained` (config overrides, `dtype`); `device` ("cpu", "cuda:0", -1, 0, or a
    TensorFlow device name); `engine` ("keras" or "litert": what runs the model, see `minibert.engine`; it is
    set on a model object passed in). Anything else is refused.
    """
    from ..checkpoint import HUB_KWARGS

    spec = get_task(task)
    hub = {k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs}
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise TypeError(f"model_kwargs must be a dict of from_pretrained arguments, got {model_kwargs!r}")
    cls = spec.pipeline_class
    unknown = sorted(set(kwargs) - set(cls.OPTIONS))
    if unknown:  # before loading anything
        raise TypeError(f"pipeline({spec.name!r}): unknown argument(s) {', '.join(unknown)}; the task takes "
                        f"{', '.join(cls.OPTIONS)}, and pipeline() also model_kwargs, device and {', '.join(HUB_KWARGS)}")
    int_option("batch_size", batch_size, 1, "the default")  # numbers and the device checked before loading
    int_option("max_length", max_length, 1, "the tokenizer's model_max_length")
    tf_device(device)
    if engine is not None:
        from ..engine import engine_name

        engine = engine_name(engine)
    if model is None:
        if spec.default_model is None:
            raise ValueError(f"{spec.name} has no offline default model: pass model= a checkpoint folder or a Hub "
                             f"id (for example {spec.example_model})")
        model = spec.default_model()
    if engine is not None and (isinstance(model, str) or hasattr(model, "__fspath__")):
        model_kwargs = {**(model_kwargs or {}), "engine": engine}
    elif engine is not None:
        model.set_engine(engine)
    model_source, settings = "the model's config", {}
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        if spec.folder_settings is not None:  # read before the model loads: a bad folder fails at once
            from ..checkpoint import resolve

            settings = spec.folder_settings(resolve(model, **hub))
            model = settings.pop("model_folder", model)
        if tokenizer is None:
            tokenizer = model
        folder_length = settings.pop("max_length", None)
        max_length = folder_length if max_length is None else max_length
        model_source = os.path.join(os.fspath(model), "config.json")
        model = spec.load_model(model, **hub, **(model_kwargs or {}))
    else:
        _check_model_class(spec, model)
    if tokenizer is None:
        raise ValueError("pass tokenizer= when model is a model object")
    if isinstance(tokenizer, str) or hasattr(tokenizer, "__fspath__"):
        from ..tokenizer import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer, **hub)
    check_tokenizer_fits(model.config, tokenizer, model_source)
    return cls(model, tokenizer, batch_size=batch_size, max_length=max_length, device=device, **settings, **kwargs)


def check_tokenizer_fits(config, tokenizer, model_source: str = "the model's config") -> None:
    """Refuse a tokenizer the model cannot read, naming both files: where a model and its tokenizer meet.

    - every id the tokenizer can produce (len(tokenizer), added tokens included) must have a row in the
      model's embedding table (`vocab_size`), or those tokens would fail or, on GPU, embed as zeros;
    - RoBERTa/XLM-R count position ids from the padding id (positions start at pad_token_id + 1), so the
      tokenizer's pad token must be the config's pad_token_id: a WordPiece vocabulary with [PAD] = 0 next to a
      RoBERTa config gives every token a wrong position. (A WordPiece tokenizer laid out as RoBERTa's, as
      klue/roberta-base has, passes.)
    - the reverse, a BERT/DistilBERT/ELECTRA model with RoBERTa's kind of tokenizer (a BPE or Unigram model
      with <s> as its first token instead of [CLS]), is refused too: its ids mean nothing to the model.
    """
    source = getattr(tokenizer, "vocab_file", None) or getattr(tokenizer, "name_or_path", "") or "the tokenizer"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(backend.model).__name__ if backend is not None else "unknown"
    model_type = config.model_type
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        n = len(tokenizer)
        missing = f"id {vocab_size} has" if n == vocab_size + 1 else f"ids {vocab_size} to {n - 1} have"
        raise ValueError(f"the tokenizer ({source}) has {n} tokens, added tokens included, but the model "
                         f"({model_source}) embeds only vocab_size={vocab_size}: {missing} no embedding; use the "
                         f"tokenizer saved with this model")
    described = f"a {kind} tokenizer with {tokenizer.cls_token!r} first and {tokenizer.pad_token!r} = id {tokenizer.pad_token_id}"
    fam = family(model_type)
    if fam is not None and fam.positions == "from padding" and tokenizer.pad_token_id != config.pad_token_id:
        raise ValueError(f"the model ({model_source}) is model_type {model_type!r}, whose position ids start after "
                         f"pad_token_id={config.pad_token_id}, but the tokenizer ({source}) is {described}: a "
                         f"tokenizer of another family; use the tokenizer saved with this model")
    if fam is not None and fam.tokenizer == "wordpiece" and kind != "WordPiece" and tokenizer.cls_token == "<s>":
        raise ValueError(f"the model ({model_source}) is model_type {model_type!r}, which reads [CLS]-first "
                         f"WordPiece ids, but the tokenizer ({source}) is {described}, RoBERTa's kind; use the "
                         f"tokenizer saved with this model")


def _check_model_class(spec: Task, model) -> None:
    from .. import auto

    head = getattr(auto, spec.model_class).head
    config = getattr(model, "config", None)
    want = auto.FAMILIES.get(getattr(config, "model_type", None), {}).get(head)
    if want is None or not isinstance(model, want):
        raise TypeError(f"{spec.name} needs a {spec.model_class} model ({head}), got {type(model).__name__}")
