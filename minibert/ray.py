"""Corpus-scale inference on Ray Data: the same pipelines over files too large for one process.

Ray Data does the scheduling (reading files in parallel, streaming batches to a pool of actors,
retrying the batches of an actor that dies, writing Parquet or JSON lines); minibert supplies three
pieces:

- a reader (a Ray `FileBasedDatasource`) for text lines, JSON lines, CSV and Parquet that gives every
  row its file and row number and turns a malformed row into an `error` value instead of failing the
  whole file or dropping the row;
- `Predict` (and `Classify`, `Embed`), callable classes for `Dataset.map_batches` that load a model once
  per actor and run each batch through `minibert.pipeline(...)`, whose length-sorted batching is the
  one every other entry point uses;
- `add_arguments` / `run`, the `--input` side of the task commands (`minibert classify`, `embed`, `ner`,
  `qa`, `fill-mask`, `zero-shot`), which pass the same call options as their one-process runs.

Which tasks run here, which columns they read and what columns they add, is TASK_OUTPUTS below: one
entry per task of `pipelines.TASKS`.

Library use, on a dataset of your own (one row per text in a `text` column):

    ds.map_batches(minibert.ray.Classify, batch_format="pyarrow", batch_size=1024,
                   compute=ray.data.ActorPoolStrategy(size=4), num_cpus=1)

Nothing here imports Ray, pyarrow or TensorFlow at import time: `minibert classify --help` stays fast and
minibert's core does not depend on Ray (`pip install "minibert[ray]"` brings it).
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import re
import sys
import time

INSTALL_HINT = 'Ray is not installed; install the extra: pip install "minibert[ray]"'
# Columns minibert adds: where a row came from, and what went wrong with it (`--on-error record`).
FILE_COLUMN, ROW_COLUMN, ERROR_COLUMN = "input_file", "input_row", "error"
# A text longer than this (UTF-8 bytes) is a malformed row: models read at most 512 tokens, and a
# runaway line (a file with no newlines) would otherwise be tokenized whole in an actor's memory.
MAX_TEXT_BYTES = 1 << 20
BLOCK_ROWS = 4096  # rows per block a reader yields: bounds a read task's memory on one huge file
FORMATS = {".txt": "text", ".text": "text", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
           ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")  # Arrow decompresses these while streaming text formats


class BadRow(ValueError):
    """A malformed input row under `on_error="fail"`; the message names the file and row."""


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the `data` extra: pyarrow, pandas)
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return ray


# -- what each task adds to a row ----------------------------------------------------------------
# One entry per task of pipelines.TASKS that runs on Ray: given the call's options (those the command
# passes to the pipeline, or a library caller's) and the pipeline, the columns it adds with their Arrow
# types, and how one pipeline result becomes those columns' values. Fixed types, not inferred ones, so
# that every block (an empty list, an all-error batch) has the same schema and the output folder reads
# as one table. `column`, `pair_column`: the columns read by default (a pair column for question
# answering's contexts, and optionally for text-pair classifiers); `keys`: the names a row's two texts
# take in the pipeline's input dict, None for tasks of single texts. `defaults`: call options when none
# are given (an embedding is the mean-pooled, normalised vector, as `minibert embed` writes it).
def _classification(options, pipe):
    import pyarrow as pa

    types = {"label": pa.string(), "score": pa.float64()}
    if options.get("top_k"):  # as `minibert classify --top-k K` prints: the K best, best first
        types["labels"] = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))

    def values(result):
        ranked = result if isinstance(result, list) else [result]
        return {"label": ranked[0]["label"], "score": ranked[0]["score"], "labels": ranked}
    return types, values


def _answers(options, pipe):
    import pyarrow as pa

    fields = [("score", pa.float64()), ("start", pa.int64()), ("end", pa.int64()), ("answer", pa.string())]
    types = dict(fields)
    if options.get("top_k"):  # as `minibert qa --top-k K` writes them: the K best spans, best first
        types["answers"] = pa.list_(pa.struct(fields))

    def values(result):
        ranked = result if isinstance(result, list) else [result]
        return {**ranked[0], "answers": ranked}
    return types, values


def _entities(options, pipe):
    import pyarrow as pa

    grouped = (options.get("aggregation_strategy") or "none") != "none"
    fields = [("entity_group" if grouped else "entity", pa.string()), ("score", pa.float64())]
    fields += [] if grouped else [("index", pa.int64())]
    fields += [("word", pa.string()), ("start", pa.int64()), ("end", pa.int64())]
    return {"entities": pa.list_(pa.struct(fields))}, lambda result: {"entities": result}


def _masks(options, pipe):
    import pyarrow as pa

    candidate = pa.struct([("score", pa.float64()), ("token", pa.int64()), ("token_str", pa.string()),
                           ("sequence", pa.string())])

    def values(result):  # one list of candidates per mask token, as `minibert fill-mask` writes them
        return {"masks": result if result and isinstance(result[0], list) else [result]}
    return {"masks": pa.list_(pa.list_(candidate))}, values


def _zero_shot(options, pipe):
    import pyarrow as pa

    return ({"labels": pa.list_(pa.string()), "scores": pa.list_(pa.float64())},
            lambda result: {"labels": result["labels"], "scores": result["scores"]})


def _embedding(options, pipe):
    import pyarrow as pa

    size = pipe.hidden_size if pipe is not None else 1  # no pipeline: the names are all that is asked
    return {"embedding": pa.list_(pa.float32(), size)}, None  # built from one numpy array: _columns


_SINGLE = dict(column="text", pair_column=None, keys=None, defaults={})
TASK_OUTPUTS = {
    "text-classification": dict(_SINGLE, columns=_classification, keys=("text", "text_pair")),
    "token-classification": dict(_SINGLE, columns=_entities),
    "question-answering": dict(columns=_answers, column="question", pair_column="context",
                               keys=("question", "context"), defaults={}),
    "fill-mask": dict(_SINGLE, columns=_masks),
    "zero-shot-classification": dict(_SINGLE, columns=_zero_shot),
    "feature-extraction": dict(_SINGLE, columns=_embedding, defaults=dict(pooling="mean", normalize=True)),
}


def _task_output(task: str) -> tuple[str, dict]:
    """(the canonical task name, its TASK_OUTPUTS entry)."""
    from .pipelines import get_task

    name = get_task(task).name
    if name not in TASK_OUTPUTS:
        raise ValueError(f"task {task!r} does not run on Ray yet; these do: {', '.join(TASK_OUTPUTS)}")
    return name, TASK_OUTPUTS[name]


def output_columns(task: str, options: dict) -> list[str]:
    """The names of the columns `task` adds with these call options."""
    name, out = _task_output(task)
    return list(out["columns"]({**out["defaults"], **options}, None)[0])


def _columns(types: dict, values, results: list, keep: list[int], n: int) -> dict:
    """The added columns for a batch of `n` rows, of which rows `keep` have `results` (the rest: null)."""
    import numpy as np
    import pyarrow as pa

    if values is None:  # an embedding: a fixed-size list of float32, from the vectors as one array
        name, kind = next(iter(types.items()))
        flat = np.zeros((n, kind.list_size), np.float32)
        if keep:
            flat[keep] = np.stack(results)
        valid = np.zeros(n, bool)
        valid[keep] = True
        return {name: pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), kind.list_size, mask=pa.array(~valid))}
    rows = [None] * n
    for i, r in zip(keep, results):
        rows[i] = values(r)
    return {name: pa.array([None if r is None else r[name] for r in rows], kind) for name, kind in types.items()}


# -- the actor: one model per process, one pipeline call per batch -------------------------------
def _limit_threads(threads: int | None) -> None:
    """Give TensorFlow `threads` threads (default: the CPUs Ray gave this actor). TF's own pools default
    to every core of the machine, so N actors would each start one thread per core and fight over them.
    Must run before TensorFlow's first op (an actor's __init__ is)."""
    if threads is None:
        import ray

        if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
            return  # not in a Ray worker (a driver, a test): TensorFlow's own defaults
        threads = max(1, round(ray.get_runtime_context().get_assigned_resources().get("CPU", 0)))
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TF already ran in this process: its thread pools exist and cannot change
        pass


class Predict:
    """A callable class for `Dataset.map_batches(..., batch_format="pyarrow")`.

    Ray builds one per actor, so the model is loaded once per actor. Each batch (a pyarrow Table) comes
    back with the task's columns added (see TASK_OUTPUTS: `label`, `score`; `embedding`; `entities`;
    `masks`; `labels`, `scores`) and every input column kept. Keyword arguments other than those named
    are the task's call options (`top_k=3`, `candidate_labels=[...]`, `aggregation_strategy="simple"`).
    `column` and `pair_column` default to the task's (TASK_OUTPUTS: `text`; `question` and `context` for
    question answering). A row whose text is not a string or is longer than `max_text_bytes`, or that arrives with an `error`
    already set by minibert's reader, gets null outputs and an `error` message (`on_error="record"`) or
    stops the run with `BadRow` naming its file and row (`on_error="fail"`; the `error` column is then
    dropped from the output).
    """

    task = None  # set by the subclasses below; `Predict(task=...)` for any task

    def __init__(self, task=None, model=None, column=None, pair_column=None, on_error="fail",
                 threads=None, batch_size=None, max_length=None, max_text_bytes=MAX_TEXT_BYTES, **call_kwargs):
        task, out = _task_output(task or self.task)
        if on_error not in ("record", "fail"):
            raise ValueError(f"on_error={on_error!r}; use 'record' or 'fail'")
        if pair_column and not out["keys"]:
            raise ValueError(f"task {task!r} takes single texts, not pairs (pair_column={pair_column!r})")
        _limit_threads(threads)
        from .pipelines import pipeline

        options = {**out["defaults"], **call_kwargs}  # the pipeline's defaults: checked here, once per actor
        self.pipe = pipeline(task, model=model, batch_size=batch_size, max_length=max_length, **options)
        self.column, self.pair_column = column or out["column"], pair_column or out["pair_column"]
        self.keys, self.on_error = out["keys"], on_error
        self.max_text_bytes = max_text_bytes
        self.types, self.values = out["columns"](options, self.pipe)

    def __call__(self, batch):
        import pyarrow as pa

        if not isinstance(batch, pa.Table):
            raise TypeError(f"expected a pyarrow Table: map_batches(..., batch_format='pyarrow'), got {type(batch).__name__}")
        n = batch.num_rows
        for name in (self.column, self.pair_column):
            if name and name not in batch.column_names:
                raise KeyError(f"no column {name!r} in the batch; columns: {', '.join(batch.column_names)}")
        taken = [name for name in self.types if name in batch.column_names]
        if taken:  # overwriting it would lose the user's data
            raise ValueError(f"the input has a column {taken[0]!r}, which the output adds; rename it")
        errors = batch.column(ERROR_COLUMN).to_pylist() if ERROR_COLUMN in batch.column_names else [None] * n
        texts = batch.column(self.column).to_pylist()
        pairs = batch.column(self.pair_column).to_pylist() if self.pair_column else None
        inputs = texts if pairs is None else [dict(zip(self.keys, (t, p))) for t, p in zip(texts, pairs)]
        for i in range(n):
            if errors[i] is None:
                problem = self._check(texts[i], self.column)
                if problem is None and pairs is not None:
                    problem = self._check(pairs[i], self.pair_column)
                errors[i] = f"{_where(batch, i)}: {problem}" if problem else self._refused(batch, inputs[i], i)
        keep = [i for i in range(n) if not errors[i]]
        if self.on_error == "fail" and len(keep) < n:
            raise BadRow(next(e for e in errors if e))
        inputs = [inputs[i] for i in keep]
        # The pipeline sorts this batch by length and runs it `batch_size` texts per forward: the same
        # code, and so the same numbers, as pipeline(...)(texts) in one process.
        results = self.pipe(inputs) if inputs else []
        if len(inputs) == 1 and self.pipe._items(inputs)[1] == "one":
            results = [results]  # QA and fill-mask give a list of one input its result itself, as transformers
        columns = _columns(self.types, self.values, results, keep, n)
        for name, values in columns.items():
            batch = batch.append_column(name, values)
        if ERROR_COLUMN in batch.column_names:
            batch = batch.drop_columns([ERROR_COLUMN])
        if self.on_error == "record":
            batch = batch.append_column(ERROR_COLUMN, pa.array([e or None for e in errors], pa.string()))
        return batch

    def _refused(self, batch, x, i: int) -> str | None:
        """What the pipeline's own input check says of this row (an empty context, an empty zero-shot text),
        with the row named as the reader names it, or None."""
        try:
            self.pipe._item(x, i)
        except (ValueError, TypeError) as e:
            text, own = str(e), f"input {i}"
            return _where(batch, i) + (text[len(own):] if text.startswith(own) else f": {text}")
        return None

    def _check(self, text, name) -> str | None:
        """Why this value cannot be run, or None."""
        if not isinstance(text, str):
            return f"{name!r} is {'null' if text is None else type(text).__name__}, expected a string"
        if len(text) * 4 > self.max_text_bytes and len(text.encode("utf-8")) > self.max_text_bytes:
            return f"{name!r} is longer than {self.max_text_bytes} bytes"
        return None


class Classify(Predict):
    """`Predict` for text classification (minibert's offline sentiment model unless `model=`)."""

    task = "text-classification"


class Embed(Predict):
    """`Predict` for sentence embeddings (all-MiniLM-L6-v2, mean pooled, L2-normalised unless told)."""

    task = "feature-extraction"


def _where(batch, i: int) -> str:
    """"FILE, row N" when the rows come from minibert's reader, else the row's place in its batch."""
    if FILE_COLUMN in batch.column_names and ROW_COLUMN in batch.column_names:
        return f"{batch.column(FILE_COLUMN)[i].as_py()}, row {batch.column(ROW_COLUMN)[i].as_py()}"
    return f"row {i} of a batch"


# -- reading: every row once, with its file and row number ---------------------------------------
def _lines(f, limit: int):
    """(line number, bytes) for each line of a binary stream, the final newline not starting a line
    (as `wc -l` and `minibert classify --file` count); bytes is None for a line longer than `limit`,
    whose bytes are skipped without being held in memory."""
    number, pending, too_long = 0, bytearray(), False
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            break
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            number += 1
            if too_long or len(pending) + end - start > limit:
                yield number, None
            else:
                yield number, bytes(pending + chunk[start:end]).removesuffix(b"\r")
            pending.clear()
            too_long, start = False, end + 1
        if not too_long:
            pending += chunk[start:]
            if len(pending) > limit:
                too_long = True
                pending.clear()
    if pending or too_long:
        yield number + 1, None if too_long else bytes(pending).removesuffix(b"\r")


def _decode(raw: bytes | None, limit: int) -> tuple[str | None, str | None]:
    """(text, error) for one line's bytes."""
    if raw is None:
        return None, f"line longer than {limit} bytes"
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"


def _table(path: str, rows: list[int], columns: dict, errors: list):
    """A block: the row ids, the file's columns, the error per row."""
    import pyarrow as pa

    arrays = {FILE_COLUMN: pa.array([path] * len(rows), pa.string()), ROW_COLUMN: pa.array(rows, pa.int64())}
    for name, values in columns.items():
        if name in (FILE_COLUMN, ROW_COLUMN, ERROR_COLUMN):
            raise ValueError(f"{path}: the input has a column {name!r}, a name minibert's output uses; rename it")
        try:
            arrays[name] = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ValueError(f"{path}: field {name!r} mixes types between rows {rows[0]} and {rows[-1]} ({e})") from None
    arrays[ERROR_COLUMN] = pa.array(errors, pa.string())
    return pa.table(arrays)


def _read_text(f, path, column, text_columns, limit):
    """One text per line, every line a row (blank ones too, as `minibert classify --file` keeps them)."""
    rows, texts, errors = [], [], []
    for number, raw in _lines(f, limit):
        text, error = _decode(raw, limit)
        rows.append(number)
        texts.append(text)
        errors.append(error and f"{path}, row {number}: {error}")
        if len(rows) == BLOCK_ROWS:
            yield _table(path, rows, {column: _str_array(texts)}, errors)
            rows, texts, errors = [], [], []
    if rows:
        yield _table(path, rows, {column: _str_array(texts)}, errors)


def _str_array(values):
    import pyarrow as pa

    return pa.array(values, pa.string())


def _read_jsonl(f, path, column, text_columns, limit):
    """One JSON object per line; blank lines hold no row and are passed over (row = line number)."""
    rows, records, errors = [], [], []

    def block():
        names = list(dict.fromkeys(k for r in records for k in r))  # every field, in order of appearance
        cols = {k: [r.get(k) for r in records] for k in names}
        for name in text_columns:
            cols[name] = _str_array(cols.get(name, [None] * len(records)))
        return _table(path, rows, cols, errors)

    for number, raw in _lines(f, limit):
        text, error = _decode(raw, limit)
        record = {}
        if error is None:
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                error, record = f"not valid JSON ({e.msg} at column {e.colno})", {}
        if error is None and not isinstance(record, dict):
            error, record = f"a JSON {type(record).__name__}, expected an object", {}
        for name in text_columns:
            if error is None and name not in record:
                error = f"no field {name!r}"
            elif error is None and not isinstance(record[name], str):
                error = f"{name!r} is {'null' if record[name] is None else type(record[name]).__name__}, expected a string"
        if error is not None:  # the row stays, its text nulled, so one bad value cannot break the block's types
            record = {**record, **{name: None for name in text_columns}}
        rows.append(number)
        records.append(record)
        errors.append(error and f"{path}, row {number}: {error}")
        if len(rows) == BLOCK_ROWS:
            yield block()
            rows, records, errors = [], [], []
    if rows:
        yield block()


def _decode_column(path, first_row, name, array, errors, limit):
    """A CSV/Parquet text column as strings; a bad value becomes null plus an error for its row."""
    import pyarrow as pa

    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        values = array.to_pylist()
    elif pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
        values = []
        for i, raw in enumerate(array.to_pylist()):
            text, error = (None, None) if raw is None else _decode(raw if len(raw) <= limit else None, limit)
            if error and not errors[i]:
                errors[i] = f"{path}, row {first_row + i}: {name!r} is {error}"
            values.append(text)
    else:
        values = [None] * len(array)
        for i in range(len(array)):
            errors[i] = errors[i] or f"{path}, row {first_row + i}: {name!r} is {array.type}, expected a string"
    for i, v in enumerate(values):
        if v is None and not errors[i]:
            errors[i] = f"{path}, row {first_row + i}: {name!r} is null, expected a string"
    return _str_array(values)


def _read_batches(batches, path, text_columns, limit):
    """Blocks from Arrow record batches (CSV, Parquet); row = 1-based record number in the file."""
    first = 1
    for rb in batches:
        missing = [c for c in text_columns if c not in rb.schema.names]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r}; columns: {', '.join(rb.schema.names)}")
        errors = [None] * rb.num_rows
        cols = {name: rb.column(name) for name in rb.schema.names}
        for name in text_columns:
            cols[name] = _decode_column(path, first, name, rb.column(name), errors, limit)
        yield _table(path, list(range(first, first + rb.num_rows)), cols, errors)
        first += rb.num_rows


def _read_csv(f, path, column, text_columns, limit):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    # Text columns read as bytes, so one invalid UTF-8 value is one bad row, not a failed file. A block
    # must hold the longest row, hence a block size above the text limit.
    reader = pcsv.open_csv(f, read_options=pcsv.ReadOptions(block_size=max(1 << 20, 2 * limit + (1 << 16))),
                           convert_options=pcsv.ConvertOptions(column_types={c: pa.binary() for c in text_columns}))
    try:
        yield from _read_batches(reader, path, text_columns, limit)
    except pa.ArrowInvalid as e:  # a row with the wrong number of fields: the parser cannot carry it on
        raise ValueError(f"{path}: {e}") from None


def _read_parquet(f, path, column, text_columns, limit):
    import pyarrow.parquet as pq

    yield from _read_batches(pq.ParquetFile(f).iter_batches(batch_size=BLOCK_ROWS), path, text_columns, limit)


READERS = {"text": _read_text, "jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}


def _rows_datasource(paths: list[str], fmt: str, column: str, pair_column: str | None, limit: int):
    """A Ray `FileBasedDatasource` over `paths` in one format (Ray's documented extension point: it lists
    files, spreads them over read tasks, streams and retries them; we only turn bytes into rows).
    Defined on first use so that importing minibert.ray does not import Ray."""
    from ray.data.datasource import FileBasedDatasource

    class MinibertRows(FileBasedDatasource):
        def __init__(self):
            super().__init__(paths)
            self.fmt, self.column, self.limit = fmt, column, limit
            self.text_columns = [c for c in (column, pair_column) if c]

        def _open_input_source(self, filesystem, path, **open_args):
            if self.fmt == "parquet":  # Parquet needs random access (its footer comes first)
                return filesystem.open_input_file(path)
            return super()._open_input_source(filesystem, path, **open_args)

        def _read_stream(self, f, path):
            yield from READERS[self.fmt](f, path, self.column, self.text_columns, self.limit)

    return MinibertRows()


def read(paths, fmt=None, column="text", pair_column=None, max_text_bytes=MAX_TEXT_BYTES):
    """A Ray Dataset of the rows of `paths` (files, folders, globs), with `input_file`, `input_row` and
    `error` columns. Call after `ray.init`. Read tasks ask for no CPU: they are light, and on a small
    machine a read task holding a CPU would keep the last model actor from starting."""
    ray = _require_ray()
    files = expand_paths(paths)
    fmt = fmt or input_format(files)
    source = _rows_datasource(files, fmt, column, pair_column, max_text_bytes)
    return ray.data.read_datasource(source, num_cpus=0)


def predict(ds, task, workers, threads=1, on_error="fail", ray_batch_size=None, udf=None, **kwargs):
    """`ds` with the task's columns added by `workers` actors of `threads` CPUs each. An actor gets
    `ray_batch_size` rows per call (default: the pipeline's streaming chunk, 1,024), which its pipeline
    sorts by length and runs `batch_size` texts per forward. `udf`: a subclass of Predict to use."""
    from .pipelines import STREAM_CHUNK

    ray = _require_ray()
    ray_batch_size = ray_batch_size or STREAM_CHUNK
    return ds.map_batches(udf or Predict, batch_format="pyarrow", batch_size=ray_batch_size,
                          fn_constructor_kwargs=dict(task=task, on_error=on_error, threads=threads, **kwargs),
                          compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads)


# -- checks before anything starts ---------------------------------------------------------------
def expand_paths(paths) -> list[str]:
    """Files for the given paths, globs and folders, in a fixed order (as given; a glob or folder sorted).
    A URI (s3://, gs://) goes to Ray as it is."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for p in map(str, paths):
        if "://" in p:
            files.append(p)
        elif glob.has_magic(p):
            found = sorted(f for f in glob.glob(p, recursive=True) if os.path.isfile(f))
            if not found:
                raise FileNotFoundError(f"no files match {p}")
            files += found
        elif os.path.isdir(p):
            found = sorted(os.path.join(d, f) for d, _, names in os.walk(p) for f in names
                           if not f.startswith((".", "_")))  # hidden files, _SUCCESS markers
            if not found:
                raise FileNotFoundError(f"no files in folder {p}")
            files += found
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise FileNotFoundError(f"no such file: {p}")
    return [os.path.abspath(f) if "://" not in f else f for f in files]


def input_format(files: list[str]) -> str:
    """The one format of `files`, from their extensions."""
    found = {}
    for f in files:
        name = f.lower()
        for z in COMPRESSED:
            name = name.removesuffix(z)
        ext = os.path.splitext(name)[1]
        if ext not in FORMATS:
            raise ValueError(f"cannot tell the format of {f} from its extension; give --input-format "
                             f"({'|'.join(READERS)})")
        found.setdefault(FORMATS[ext], f)
    if len(found) > 1:
        raise ValueError(f"the inputs mix formats ({', '.join(f'{k}: {v}' for k, v in found.items())}); "
                         "run one format at a time")
    return next(iter(found))


def input_columns(path: str, fmt: str) -> list[str] | None:
    """The first file's columns (None for text lines, whose one column is named by --column)."""
    if fmt == "text" or "://" in path:
        return None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(path).names
    import pyarrow as pa

    with pa.input_stream(path, compression="detect") as f:
        if fmt == "csv":
            import pyarrow.csv as pcsv

            return pcsv.open_csv(f).schema.names
        for number, raw in _lines(f, MAX_TEXT_BYTES):
            text, _ = _decode(raw, MAX_TEXT_BYTES)
            if text is not None and text.strip():
                try:
                    record = json.loads(text)
                except json.JSONDecodeError:
                    return None  # the row will carry its own error
                return list(record) if isinstance(record, dict) else None
    return None


def check_output(output: str, overwrite: bool):
    """Refuse a folder that holds files unless `overwrite` (then empty it). Returns (filesystem, path)."""
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(output if "://" in output else os.path.abspath(output))
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise FileExistsError(f"--output {output} is a file; give a folder")
    if info.type == pafs.FileType.Directory and fs.get_file_info(pafs.FileSelector(root)):
        if not overwrite:
            raise FileExistsError(f"--output {output} exists and is not empty (add --overwrite to replace it)")
        fs.delete_dir_contents(root)
    return fs, root


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail at once on an address nothing listens on: `ray.init` itself keeps retrying for minutes."""
    import socket

    if address in ("auto", "local"):
        return
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address {address}: expected HOST:PORT (or ray://HOST:PORT, auto)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None


# -- the command ---------------------------------------------------------------------------------
def add_arguments(parser, pairs: bool = False) -> None:
    """The --input options on a task command's subparser (classify, ner, qa, fill-mask, zero-shot, embed). The
    task's own options, --batch-size (texts per forward), --model and --max-length keep their meaning;
    `embed` already has --output, which names a folder here."""
    g = parser.add_argument_group("datasets on Ray (pip install \"minibert[ray]\")")
    g.add_argument("--input", "-i", nargs="+", metavar="PATH",
                   help="files, folders or globs to read with Ray Data (text lines, JSONL, CSV, Parquet)")
    g.add_argument("--input-format", choices=list(READERS), help="default: from the file extensions")
    g.add_argument("--column", help="the text column (default: text; for qa, the question column: question)")
    if pairs:
        g.add_argument("--pair-column", metavar="COLUMN",
                       help="a second text column: the second text for text-pair models, the context for qa "
                            "(default: none; for qa: context)")
    try:
        g.add_argument("--output", "-o", metavar="FOLDER", help="with --input: the output folder")
    except argparse.ArgumentError:  # the command has its own --output (embed's .npy file): same name, a folder here
        pass
    g.add_argument("--output-format", choices=["parquet", "jsonl"], default="parquet")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    g.add_argument("--workers", type=int, metavar="N", help="model actors (default: the cluster's CPUs / --threads)")
    g.add_argument("--threads", type=int, default=1, metavar="N", help="CPUs (TensorFlow threads) per actor (default 1)")
    g.add_argument("--address", metavar="ADDR", help="join this Ray cluster (default: start a local Ray for the run)")
    g.add_argument("--on-error", choices=["fail", "record"], default="fail",
                   help="a malformed row stops the run (fail), or gets an `error` column value (record)")


# The --input options' defaults: one given without --input is a mistake, not something to ignore.
_INPUT_ONLY = {"input_format": None, "column": None, "pair_column": None, "output_format": "parquet",
               "overwrite": False, "workers": None, "threads": 1, "address": None, "on_error": "fail"}


def check_no_input_options(args, output_is_input_only: bool = True) -> None:
    """Refuse an option of the --input group on a run without --input."""
    names = {**_INPUT_ONLY, **({"output": None} if output_is_input_only else {})}
    for name, default in names.items():
        if getattr(args, name, default) != default:
            raise ValueError(f"--{name.replace('_', '-')} goes with --input (a dataset run on Ray)")


def run(task: str, args, options: dict) -> int:
    """`minibert <task> --input ...`: read, predict on an actor pool, write; a summary on stderr.
    `options`: the task's call options, as the command builds them for its one-process run."""
    ray = _require_ray()
    task, out = _task_output(task)
    # Everything that can be wrong with the command line is found here, before Ray or a model starts.
    if getattr(args, "texts", None) or getattr(args, "file", None):
        raise ValueError("give --input or TEXT/--file, not both")
    if not args.output:
        raise ValueError("--input needs --output FOLDER")
    if args.output.endswith(".npy"):
        raise ValueError(f"with --input, --output is a folder (Parquet or JSON lines), not a .npy file: {args.output}")
    if getattr(args, "pair", False):
        raise ValueError("with --input, name the second text's column with --pair-column instead of --pair")
    for name in ("workers", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1")
    column = args.column or out["column"]
    pair_column = getattr(args, "pair_column", None) or out["pair_column"]
    files = expand_paths(args.input)
    fmt = args.input_format or input_format(files)
    try:
        columns = input_columns(files[0], fmt)
    except Exception as e:  # pyarrow's ArrowInvalid (not Parquet, not CSV), an unreadable file
        raise ValueError(f"{files[0]}: cannot read it as {fmt}: {_last_line(e)}") from None
    if fmt == "text" and pair_column:
        raise ValueError(f"{files[0]}: a text file holds one text per line; {task} also reads a column "
                         f"{pair_column!r}: give JSONL, CSV or Parquet")
    for name in (column, pair_column):
        if name and columns is not None and name not in columns:
            raise ValueError(f"{files[0]}: no column {name!r}; columns: {', '.join(columns)}")
    taken = set(output_columns(task, options)) & set(columns or [])
    if taken:
        raise ValueError(f"{files[0]}: the input has a column {sorted(taken)[0]!r}, which the output adds; rename it")
    if args.address:
        check_address(args.address)
    model = args.model
    if model is not None:  # a wrong --model fails now; a Hub id is fetched into the cache once, here
        from .checkpoint import resolve

        local = resolve(model)
        # A local Ray shares this machine's files; on a cluster each node resolves a Hub id itself.
        model = os.path.abspath(local) if not args.address or os.path.isdir(model) else model
    check_output(args.output, args.overwrite)  # last: with --overwrite it empties the folder

    started = time.perf_counter()
    own_ray = not ray.is_initialized()
    if own_ray:
        try:
            # A local Ray inherits this environment (PYTHONPATH included), so its workers import this minibert.
            ray.init(address=args.address, include_dashboard=False, logging_level="WARNING",
                     log_to_driver=False)
        except Exception as e:  # Ray raises a bare Exception when its node times out starting (an overloaded machine)
            raise ConnectionError(f"cannot reach the Ray cluster at {args.address}: {e}" if args.address
                                  else f"cannot start a local Ray: {e}") from None
    try:
        ctx = ray.data.DataContext.get_current()  # this driver's settings for the datasets it runs
        ctx.execution_options.preserve_order = True  # output files in input order (see the README)
        if getattr(args, "quiet", False):
            ctx.enable_progress_bars = False
            logging.getLogger("ray.data").setLevel(logging.WARNING)  # its "Starting execution" lines
        threads = args.threads
        workers = args.workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        ray_started = time.perf_counter() - started
        ds = read(files, fmt, column, pair_column)
        ds = predict(ds, task, workers, threads, args.on_error, model=model, column=column,
                     pair_column=pair_column, batch_size=args.batch_size, max_length=args.max_length, **options)
        write = ds.write_parquet if args.output_format == "parquet" else ds.write_json
        try:
            write(args.output, ray_remote_args={"num_cpus": 0})
        except Exception as e:
            raise _user_error(e) from None
    finally:
        if own_ray:
            ray.shutdown()
    seconds = time.perf_counter() - started
    rows, bad = count_output(args.output, args.output_format)
    errors = f", {bad} with an error (see the `error` column)" if bad else ""
    print(f"minibert: {rows} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):.1f} rows/s; Ray start-up "
          f"{ray_started:.1f} s) with {workers} worker(s) x {threads} thread(s){errors}; wrote {args.output}",
          file=sys.stderr)
    return 0


def _user_error(e: BaseException) -> BaseException:
    """The malformed-row or input error that stopped a run, as one line for the command. Ray delivers a
    failure inside an actor or read task as a RayTaskError whose text holds the original traceback (the
    exception object itself does not always travel), so the original line is found in that text: a
    minibert error (BadRow, CheckpointError) or a plain Python one from our readers."""
    found = re.search(r"^(?:minibert\.[\w.]+|ValueError|KeyError|TypeError|OSError|FileNotFoundError): (.+)$",
                      str(e), re.MULTILINE)
    return ValueError(found.group(1)) if found else e


def _last_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def count_output(output: str, fmt: str) -> tuple[int, int]:
    """(rows, rows with an error) as written: the count comes from the output, not from our bookkeeping."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    dataset = pads.dataset(output, format="parquet" if fmt == "parquet" else "json")
    bad = dataset.count_rows(filter=pc.field(ERROR_COLUMN).is_valid()) if ERROR_COLUMN in dataset.schema.names else 0
    return dataset.count_rows(), bad
