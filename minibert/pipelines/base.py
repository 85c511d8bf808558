"""The engine every task shares: options, input checks, streaming, length-sorted batches; and the
records a task declares itself with (`Task`, its `Command` and its `TraceStage`).

Inside every pipeline, inputs become rows (a text, a text pair, one window of a long text), the rows
are sorted by length and cut into batches that are each padded only to their own longest row, and
the results are put back in input order: the same results as one input at a time (padding is
masked), in fewer forwards. A pipeline object holds no per-call state, so several threads may call
it at once. An iterator input (a generator, an open file) gives a generator of results, read in
windows of up to STREAM_CHUNK inputs; inside a window each result comes out as soon as it and every
input before it are done.
"""
from __future__ import annotations

import argparse
import itertools
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from ..tokenizer import check_text

DEFAULT_BATCH_SIZE = 64  # most rows per forward; scripts/bench.py measures the choice (README, speed)
STREAM_CHUNK = 1024  # inputs read from an iterator, sorted by length and batched together, at a time
# How rows sorted by length are cut into forwards (`split_sorted`): a forward's fixed cost (set-up and one
# pass over the weights) in tokens of work, as measured on LiteRT (docs/benchmarks.md), and the fewest rows a
# forward takes, since the compiled paths pad 1-4 rows up to a bucket shape.
FORWARD_COST = 12
MIN_ROWS = 5


def softmax(logits: np.ndarray) -> np.ndarray:
    """Over the last axis, shifted by the row maximum so exp never overflows."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def split_sorted(lengths: np.ndarray, batch_size: int) -> list[int]:
    """Cut points [0, ..., n] that split rows sorted by length (ascending) into forwards of at most `batch_size`
    rows, each padded to its longest row: those that minimise the padded tokens plus FORWARD_COST per forward.

    Cutting at every `batch_size` rows pads little on a long sorted list, but a few dozen texts of mixed
    lengths (a server's model call) cut 16 at a time carry a lot of padding, and cutting where the lengths
    jump far less (`scripts/padding.py` counts both). Dynamic programming over the cut points: cost[i] is
    the least cost of rows [0, i), whose last forward is [j, i) and costs FORWARD_COST + (i - j) *
    lengths[i - 1]. Forwards have at least MIN_ROWS rows, except the first (the shortest rows), so that any
    n can be cut.
    """
    n = len(lengths)
    fewest = min(MIN_ROWS, batch_size)
    cost, cut = np.zeros(n + 1), np.zeros(n + 1, dtype=np.int64)
    for i in range(1, n + 1):
        j = np.arange(max(0, i - batch_size), i - fewest + 1)  # where the last forward [j, i) may start
        if i <= batch_size and (j.size == 0 or j[0] != 0):
            j = np.insert(j, 0, 0)  # the first forward may be short
        total = cost[j] + FORWARD_COST + (i - j) * lengths[i - 1]
        best = int(np.argmin(total))  # the first of equals: the longer forward
        cost[i], cut[i] = total[best], j[best]
    cuts = [n]
    while cuts[-1] > 0:
        cuts.append(int(cut[cuts[-1]]))
    return cuts[::-1]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def rounded(rows) -> list:
    """Rows of numbers to 4 decimals, as trace prints them."""
    return [[round(float(v), 4) for v in row] for row in rows]


def int_option(name: str, value, minimum: int, none_means: str | None = None):
    """An integer option checked where it enters: a clear error instead of garbage later."""
    if value is None and none_means is not None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        also = f" (or None for {none_means})" if none_means else ""
        raise TypeError(f"{name} must be an int{also}, got {type(value).__name__} {value!r}")
    if value < minimum:
        also = f"; None means {none_means}" if none_means else ""
        raise ValueError(f"{name}={value}; it must be at least {minimum}{also}")
    return int(value)


def bool_option(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def choice(name: str, value, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name}={value!r}; use one of {', '.join(repr(c) for c in choices)}")
    return value.lower()


class Pipeline:
    """What every task shares: options, input checks, streaming, length-sorted batches.

    A task says which options it takes (`OPTIONS`, with their defaults), how it checks one input
    (`check_input`), and its three stages: `_encode` (checked inputs -> tokenized rows), `_take` (one
    row's result from a batch's model outputs, named in `OUTPUTS`) and `_decode` (an input's row results
    -> its result); `_shape` says how a single input's result is returned.
    """

    task = ""
    OPTIONS: dict = {"batch_size": None}
    OUTPUTS: tuple[str, ...] = ()
    INPUT = "a string, a list of strings or an iterator of strings"

    def __init__(self, model, tokenizer, batch_size=None, max_length=None, device=None, **options):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = int_option("batch_size", batch_size, 1, "the default") or DEFAULT_BATCH_SIZE
        self.max_length = int_option("max_length", max_length, 1, "the tokenizer's model_max_length")
        self.device = tf_device(device)
        self._check_model()
        self.options = MappingProxyType(dict(options))  # defaults for every call; never changed after this
        self._options(None)  # bad defaults fail here, not at the first call

    def _check_model(self) -> None:
        """Refuse a model this task cannot use, when the pipeline is built."""

    # -- calling ---------------------------------------------------------------------------------
    def __call__(self, inputs, **kwargs):
        """A string (or the task's single input) or a list gives the results at once. An iterator (a
        generator, an open file) is streamed, as transformers' pipelines do: a generator of results, one
        per input, computed at most STREAM_CHUNK inputs at a time, so memory stays bounded however long the input."""
        opts = self._options(kwargs)
        if isinstance(inputs, Iterator):
            return self._stream(inputs, opts)
        items, shape = self._items(inputs)
        return self._shape(list(self._run(items, opts, 0)) if items else [], shape, opts)

    def _options(self, call: dict | None) -> dict:
        """Construction defaults, then call arguments, checked; a dict the call reads (nothing is stored).

        call is None when the pipeline is built: the defaults alone are checked then.
        """
        given = {**self.options, **(call or {})}
        unknown = sorted(set(given) - set(self.OPTIONS))
        if unknown:
            raise TypeError(f"{self.task} pipeline: unknown argument(s) {', '.join(unknown)}; "
                            f"it takes {', '.join(self.OPTIONS)}")
        opts = {**self.OPTIONS, **given}
        opts["batch_size"] = int_option("batch_size", opts["batch_size"], 1, "the pipeline's") or self.batch_size
        return self._sanitize(opts, call)

    def _sanitize(self, opts: dict, call: dict) -> dict:
        return opts

    def _items(self, inputs) -> tuple[list, str]:
        """(checked inputs, "one" or "list": how the results are returned)."""
        if isinstance(inputs, (list, tuple)):
            return [self.check_input(x, i) for i, x in enumerate(inputs)], "list"
        if isinstance(inputs, str):
            return [self.check_input(inputs, 0)], "one"
        raise TypeError(f"{self.task} pipeline: expected {self.INPUT}, got {type(inputs).__name__}")

    def check_input(self, x, i: int = 0):
        """One input as the task reads it, or a ValueError/TypeError naming it "input i": front ends that
        keep their own rows (Ray's batches) call this to turn a bad row into an error row."""
        check_text(x, f"input {i}")
        return x

    def results_for(self, inputs: list, **kwargs) -> list:
        """One result per input of a list, in order, from one length-sorted run, whatever shape `__call__`
        gives a list of one (QA and fill-mask return that input's result itself, as transformers)."""
        opts = self._options(kwargs)
        items = [self.check_input(x, i) for i, x in enumerate(inputs)]
        return list(self._run(items, opts, 0)) if items else []

    def refusals(self, inputs: list, **kwargs) -> list:
        """For each input of a list, the error (ValueError or TypeError) the pipeline raises for it alone, or
        None: its checks and encoding, no model work. Front ends that keep their own rows (Ray's batches)
        call this when `results_for` refuses a batch, to turn the refused rows into error rows."""
        opts = self._options(kwargs)
        found = []
        for i, x in enumerate(inputs):
            try:
                self._check_lengths(self._encode([self.check_input(x, i)], opts, i), i, opts)
                found.append(None)
            except (ValueError, TypeError) as e:
                found.append(e)
        return found

    def _shape(self, results: list, shape: str, opts: dict):
        return results[0] if shape == "one" else results

    def _stream(self, inputs: Iterator, opts: dict):
        # Windows start at one batch and double up to STREAM_CHUNK: the first results come after one
        # forward (`minibert classify ... | head -3` answers at once), later ones with the long
        # windows that sort by length best. Inside a window, results come as its prefix is done (_forward_rows).
        start, size = 0, min(opts["batch_size"], STREAM_CHUNK)
        while True:
            chunk = list(itertools.islice(inputs, size))
            if not chunk:
                return
            items = [self.check_input(x, i) for i, x in enumerate(chunk, start)]
            yield from self._run(items, opts, start)
            start, size = start + len(chunk), min(2 * size, STREAM_CHUNK)

    def _run(self, items: list, opts: dict, first: int) -> Iterator:
        """Results for checked inputs, in order, each as soon as it is done; `first` numbers the inputs in
        error messages (their place in a stream). Every check runs before the first forward."""
        rows = self._encode(items, opts, first)
        self._check_lengths(rows, first, opts)  # before any forward
        groups = self._forward_rows(rows, opts["batch_size"], lambda out, j, enc: self._take(out, j, enc, opts), first)
        for item, group in zip(items, groups):
            yield self._decode(item, group, opts)

    def _encode(self, items: list, opts: dict, first: int) -> list:
        """(input number within the chunk, `tokenizers.Encoding`) rows, grouped by input."""
        raise NotImplementedError

    def _take(self, out: dict, j: int, enc, opts: dict):
        """Row j's result from a batch's outputs (numpy arrays keyed by the names in OUTPUTS)."""
        raise NotImplementedError

    def _decode(self, item, rows: list, opts: dict):
        """An input's result from its rows' results (one row, or one per window or label)."""
        return rows[0]

    # -- the model -------------------------------------------------------------------------------
    def _forward_rows(self, rows: list, batch_size: int, take: Callable, first: int = 0) -> Iterator[list]:
        """Run rows through the model, shortest first, at most `batch_size` rows per forward, each batch padded
        to its longest row (`split_sorted` chooses the cuts); yield, input by input in order, the list of that
        input's row results, as soon as its rows and those of every input before it have run.

        rows: (input number within the chunk, `tokenizers.Encoding` without padding) pairs, grouped by
        input (an input has one row, or one per window of a long text, or per zero-shot label).
        take(outputs, j, encoding): the row's result from a batch's outputs (numpy arrays keyed by the
        names in OUTPUTS; j is the row's place in the batch).
        """
        lengths = np.array([len(enc.ids) for _, enc in rows])
        order = np.argsort(lengths, kind="stable")
        cuts = split_sorted(lengths[order], batch_size)
        results, done = [None] * len(rows), 0  # rows[:done] have run and been yielded
        for start, stop in zip(cuts[:-1], cuts[1:]):
            idx = order[start:stop]
            with self.device_scope():  # around the forward only: the caller's code runs between yields
                out = self.model(self._pad([rows[i][1] for i in idx]))
            arrays = {name: getattr(out, name).numpy() for name in self.OUTPUTS}
            self._warn_non_finite(arrays, [first + rows[i][0] for i in idx])
            for j, i in enumerate(idx):
                results[i] = (take(arrays, j, rows[i][1]),)  # a 1-tuple: a result may itself be None
            end = done
            while end < len(rows) and results[end] is not None:
                end += 1
            while done < end and (end == len(rows) or rows[end][0] != rows[done][0]):
                k, group = rows[done][0], []  # the input's rows are done and so are all before it
                while done < end and rows[done][0] == k:
                    group.append(results[done][0])
                    results[done], done = None, done + 1  # yielded: its memory can go
                yield group

    def _check_lengths(self, rows: list, first: int, opts: dict) -> None:
        """Refuse a row the position table cannot hold."""
        limit = self.model.config.max_sequence_length  # the position table, less RoBERTa's offset
        for k, enc in rows:
            if len(enc.ids) > limit:
                raise ValueError(f"input {first + k} is {len(enc.ids)} tokens long, more than the {limit} this model "
                                 f"takes{self._too_long_hint(opts, limit)}")

    def _too_long_hint(self, opts: dict, positions: int) -> str:
        """What to change when a row passes the position table: truncation, or (truncation being on already)
        the length it truncates to, which is past the model's positions."""
        if not opts.get("truncation", True):
            return "; pass truncation=True"
        if opts.get("max_length") or self.max_length:
            source = f"max_length={opts.get('max_length') or self.max_length}"
        else:
            source = f"the tokenizer's model_max_length={self.tokenizer.model_max_length}"
        how = "pass" if "max_length" in self.OPTIONS else "build the pipeline with"
        return f"; truncation is on, but to {source}: {how} max_length={positions} or less"

    def _warn_non_finite(self, arrays: dict, inputs: list) -> None:
        """Warn once per pipeline when the model's outputs hold NaN or infinity (finite weights can still
        overflow float32): the results made of them are not numbers, and nothing downstream says so."""
        if self.__dict__.get("_warned_non_finite"):
            return
        for name, a in arrays.items():
            finite = np.isfinite(a.reshape(len(a), -1)).all(axis=1)  # (B,): one flag per row
            if not finite.all():
                self.__dict__["_warned_non_finite"] = True
                warnings.warn(f"{self.task} pipeline: the model's {name} for input {inputs[int(np.argmin(finite))]} "
                              "hold NaN or infinite values, so its results are not numbers: are the model's weights "
                              "broken? (said once per pipeline)", RuntimeWarning, stacklevel=2)
                return

    def _pad(self, encodings: list) -> dict:
        """The model's inputs for a batch: (B, T) arrays, T the longest row, padding masked out."""
        B, T = len(encodings), max(len(e.ids) for e in encodings)
        ids = np.full((B, T), self.tokenizer.pad_token_id, np.int32)
        types, mask = np.zeros((B, T), np.int32), np.zeros((B, T), np.int32)
        for j, e in enumerate(encodings):
            n = len(e.ids)
            ids[j, :n], types[j, :n], mask[j, :n] = e.ids, e.type_ids, e.attention_mask
        arrays = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
        return {name: arrays[name] for name in self.tokenizer.model_input_names if name in arrays}

    def device_scope(self):
        if self.device is None:
            return nullcontext()
        from .._tensorflow import load_tensorflow_quietly

        return load_tensorflow_quietly().device(self.device)

    def _limit(self, opts: dict) -> int:
        return opts.get("max_length") or self.max_length or self.tokenizer.model_max_length

    # -- what front ends ask of a pipeline -----------------------------------------------------
    @property
    def max_input_tokens(self) -> int:
        """The longest input it takes, in tokens: its max_length (or the tokenizer's), within the model's positions."""
        return int(min(self._limit({}), self.model.config.max_sequence_length))

    def check_options(self, **options) -> dict:
        """The call options checked as a call would check them (TypeError/ValueError naming the bad one),
        before any input is read or model work is done."""
        return self._options(options)

    def warm_up(self, longest: int | None = None) -> None:
        """Compile the model's forwards before the first real input: every small-input XLA shape it can meet
        (the buckets `compiled.py` pads to, up to `longest` tokens) and the open-shape graph larger batches run.
        Run it on the thread that will run the model: LiteRT's interpreters are made per thread."""
        from ..compiled import XLA_BATCHES, XLA_SEQS

        longest = longest or self.max_input_tokens
        for t in sorted({min(t, longest) for t in XLA_SEQS}):
            enc = self.tokenizer([" ".join(["hello"] * t)], truncation=True, max_length=t).encodings
            for rows in XLA_BATCHES:
                self.model(self._pad(enc * rows))
        self.model(self._pad(enc * (max(XLA_BATCHES) + 1)))  # past the buckets: the graph


# -- devices -------------------------------------------------------------------------------------
def tf_device(device):
    """transformers' device argument as a TensorFlow device name: -1 or "cpu" the CPU, n or "cuda:n" GPU n."""
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, (int, str)):
        raise TypeError(f"device must be an int or a string like 'cpu', 'cuda:0' or '/GPU:0', got {device!r}")
    if isinstance(device, int):
        name = "/CPU:0" if device < 0 else f"/GPU:{device}"
    elif device.lower() == "cpu":
        name = "/CPU:0"
    elif device.lower().split(":")[0] in ("cuda", "gpu"):
        name = f"/GPU:{device.split(':')[1] if ':' in device else 0}"
    else:
        name = device
    from .._tensorflow import load_tensorflow_quietly

    tf = load_tensorflow_quietly()
    available = [d.name for d in tf.config.list_logical_devices()]  # "/device:CPU:0", ...
    if not any(a.upper().endswith(name.upper().lstrip("/")) for a in available):
        raise ValueError(f"device={device!r}: TensorFlow has no {name} here; it has {', '.join(available)}")
    return name


# -- how a task declares itself ------------------------------------------------------------------
def count(text: str) -> int:
    """argparse `type=` for a flag that counts something (texts, tokens, answers): an int of at least 1,
    refused by the parser itself, so the error names the flag before anything loads."""
    value = int(text)  # a ValueError here reads "invalid count value: 'x'"
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@dataclass(frozen=True)
class Command:
    """A task's `minibert <verb>` command: its own flags, how they become call options, how one input
    line becomes a pipeline input and how a record prints. The CLI reads this and nothing else about the task.

    Every callable takes the parsed arguments (`args`); `options` and `make_input` may raise ValueError
    for a bad command line, which the CLI prints as one line before any model loads.
    """

    verb: str
    help: str
    description: str
    default_model: str  # what --model defaults to, for --help
    arguments: Callable[[Any], None]  # add the task's own flags to its subparser
    options: Callable[[Any], dict]  # the pipeline call options the flags ask for
    cells: Callable[[dict, Any], list]  # a record's table (and TSV) cells, before the input's own
    header: Callable[[Any], list]  # the table's header for its cells
    make_input: Callable[[Any], Callable[[str], Any]] = lambda args: str  # an input line -> a pipeline input
    input_name: str = "text"  # the input's key in each JSON line and the table's last column
    formats: tuple[str, ...] = ("table", "jsonl", "tsv")
    vectors: bool = False  # --output FILE.npy writes the records' vector as one array
    # (input number, (text, result)) pairs -> those to print, in print order; None prints every result as it
    # comes. A command that orders its results (rerank: best first, the top K) waits for all of them.
    arrange: Callable[[list, Any], list] | None = None
    table_cells: Callable[[dict, Any], list] | None = None  # the table's cells where they differ from TSV's


@dataclass(frozen=True)
class TraceStage:
    """What `minibert trace` shows after a head: computed from the model's outputs, printed as lines."""

    head: str  # the head it follows (a key of `auto.FAMILIES[model_type]`: "sequence-classification", ...)
    shows: str  # one line for docs and --help
    compute: Callable | None = None  # (outputs, tokens, mask, config, tokenizer) -> dict merged into the trace
    lines: Callable[[dict], list] = lambda trace: []  # the trace dict -> lines for a terminal


@dataclass(frozen=True)
class Task:
    """One task, declared once in its module: everything `pipeline()`, the CLI, `trace` and Ray need.

    `columns(options, pipe)` gives the columns a result becomes with these call options, with their
    Arrow types (fixed types, not inferred ones, so every Ray block has one schema; `pipe` may be None
    when only the names are asked); `record(result, options)` gives their values for one result. JSON
    lines, TSV, tables and Arrow columns are all made from that record.
    """

    name: str  # transformers' task name
    aliases: tuple[str, ...]  # other names pipeline() accepts, as transformers
    model_class: str  # the minibert.auto class that loads its checkpoints
    pipeline_class: type  # its Pipeline subclass
    command: Command
    columns: Callable[[dict, Any], dict]
    record: Callable[[Any, dict], dict]
    trace: TraceStage | None = None
    column: str = "text"  # the input column read by default on Ray
    pair_column: str | None = None  # a second column read by default (QA's contexts)
    pair_keys: tuple[str, str] | None = None  # the names a row's two texts take in the pipeline's input dict
    defaults: dict = field(default_factory=dict)  # call options when a library caller gives none
    # What a checkpoint folder states for the task (sentence-transformers' modules, max_seq_length): the folder
    # -> the pipeline's keyword arguments, plus "max_length" and "model_folder" (where config.json is)
    folder_settings: Callable[[str], dict] | None = None
    default_model: Callable[[], str] | None = None  # an offline folder when no model= is given
    example_model: str = ""  # a Hub id that fits, named in the error when there is no default

    @property
    def cli_verb(self) -> str:
        return self.command.verb

    @property
    def trace_shows(self) -> str:
        return self.trace.shows if self.trace else ""

    def load_model(self, name_or_path, **kwargs):
        """The task's model from a folder or Hub id; on the litert engine a model converted before runs without
        TensorFlow (`runtime.py`)."""
        from .. import runtime

        model = runtime.load(name_or_path, self.model_class, kwargs)
        if model is not None:
            return model
        from .. import auto
        from .._tensorflow import load_tensorflow_quietly

        load_tensorflow_quietly()
        model = getattr(auto, self.model_class).from_pretrained(name_or_path, **kwargs)
        runtime.remember(name_or_path, self.model_class, kwargs, model)
        return model

    def output_columns(self, options: dict) -> list[str]:
        """The names of the columns this task adds with these call options."""
        return list(self.columns({**self.defaults, **options}, None))
