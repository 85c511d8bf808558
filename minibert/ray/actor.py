"""The predicting actor: one model per Ray actor process, one pipeline call per batch of rows."""
from __future__ import annotations

from ..frontend import limit_threads
from .readers import ERROR_COLUMN, FILE_COLUMN, MAX_TEXT_BYTES, ROW_COLUMN, _require_ray


class BadRow(ValueError):
    """A malformed input row under `on_error="fail"`; the message names the file and row."""


def arrow_type(kind):
    """The Arrow type of a task's column kind (`pipelines/columns.py`)."""
    import pyarrow as pa

    if kind.name == "list":
        return pa.list_(arrow_type(kind.item))
    if kind.name == "struct":
        return pa.struct([(name, arrow_type(k)) for name, k in kind.fields])
    if kind.name == "vector":
        return pa.list_(arrow_type(kind.item), kind.size)
    return {"string": pa.string(), "float64": pa.float64(), "float32": pa.float32(), "int64": pa.int64()}[kind.name]


def _columns(kinds: dict, records: list, keep: list[int], n: int) -> dict:
    """The task's columns for a batch of `n` rows, of which rows `keep` have `records` (the rest: null).
    Fixed types, not inferred ones, so that every block (an empty list, an all-error batch) has the same
    schema and the output folder reads as one table."""
    import numpy as np
    import pyarrow as pa

    columns = {}
    for name, kind in kinds.items():
        if kind.name == "vector":  # a vector per row (an embedding): built from one array
            flat = np.zeros((n, kind.size), kind.item.name)
            if keep:
                flat[keep] = np.stack([r[name] for r in records])
            valid = np.zeros(n, bool)
            valid[keep] = True
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), kind.size,
                                                              mask=pa.array(~valid))
            continue
        values = [None] * n
        for i, r in zip(keep, records):
            values[i] = r[name]
        columns[name] = pa.array(values, arrow_type(kind))
    return columns


# -- the actor: one model per process, one pipeline call per batch -------------------------------
class Predict:
    """A callable class for `Dataset.map_batches(..., batch_format="pyarrow")`.

    Ray builds one per actor, so the model is loaded once per actor. Each batch (a pyarrow Table) comes
    back with the task's columns added (its module's `columns`: `label`, `score`; `embedding`;
    `entities`; `masks`; `labels`, `scores`; `answer`, `score`, `start`, `end`) and every input column
    kept. Keyword arguments other than those named are the task's call options (`top_k=3`,
    `candidate_labels=[...]`, `aggregation_strategy="simple"`). `column` and `pair_column` default to
    the task's (`text`; `question` and `context` for question answering). A row whose text is not a
    string or is longer than `max_text_bytes`, or that arrives with an `error` already set by minibert's
    reader, gets null outputs and an `error` message (`on_error="record"`) or stops the run with
    `BadRow` naming its file and row (`on_error="fail"`; the `error` column is then dropped from the output).
    """

    task = None  # set by the subclasses below; `Predict(task=...)` for any task

    def __init__(self, task=None, model=None, column=None, pair_column=None, on_error="fail",
                 threads=None, batch_size=None, max_length=None, max_text_bytes=MAX_TEXT_BYTES, **call_kwargs):
        from ..pipelines import get_task, pipeline

        spec = get_task(task or self.task)
        if on_error not in ("record", "fail"):
            raise ValueError(f"on_error={on_error!r}; use 'record' or 'fail'")
        if pair_column and not spec.pair_keys:
            raise ValueError(f"task {spec.name!r} takes single texts, not pairs (pair_column={pair_column!r})")
        limit_threads(threads)
        self.options = {**spec.defaults, **call_kwargs}  # the pipeline's defaults: checked here, once per actor
        self.pipe = pipeline(spec.name, model=model, batch_size=batch_size, max_length=max_length, **self.options)
        self.column, self.pair_column = column or spec.column, pair_column or spec.pair_column
        self.keys, self.on_error = spec.pair_keys, on_error
        self.max_text_bytes = max_text_bytes
        self.types, self.record = spec.columns(self.options, self.pipe), spec.record

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
        if self.on_error == "fail" and len(keep) < n:  # the first bad row, the pipeline's refusals included
            first = next(i for i in range(n) if errors[i])
            earlier = [i for i in keep if i < first]
            for j, (i, e) in enumerate(zip(earlier, self.pipe.refusals([inputs[i] for i in earlier]))):
                if e is not None:
                    raise BadRow(_named(batch, i, str(e), f"input {j}"))
            raise BadRow(errors[first])
        # The pipeline sorts this batch by length and runs it `batch_size` texts per forward: the same
        # code, and so the same numbers, as pipeline(...)(texts) in one process.
        try:
            results = self.pipe.results_for([inputs[i] for i in keep])
        except (ValueError, TypeError):
            # A row the pipeline refuses when it encodes it (no mask token, a question too long): find
            # which, alone, before any model work, and make them error rows.
            refused = self.pipe.refusals([inputs[i] for i in keep])
            if not any(refused):
                raise
            for j, (i, e) in enumerate(zip(keep, refused)):
                if e is not None:
                    errors[i] = _named(batch, i, str(e), f"input {j}")
            if self.on_error == "fail":
                raise BadRow(next(errors[i] for i in keep if errors[i])) from None
            keep = [i for i in keep if not errors[i]]
            results = self.pipe.results_for([inputs[i] for i in keep])
        columns = _columns(self.types, [self.record(r, self.options) for r in results], keep, n)
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
            self.pipe.check_input(x, i)
        except (ValueError, TypeError) as e:
            return _named(batch, i, str(e), f"input {i}")
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


def _named(batch, i: int, message: str, own: str) -> str:
    """The pipeline's message about one input, with the row named as the reader names it instead of `own`."""
    return _where(batch, i) + (message[len(own):] if message.startswith(own) else f": {message}")


def _where(batch, i: int) -> str:
    """"FILE, row N" when the rows come from minibert's reader, else the row's place in its batch."""
    if FILE_COLUMN in batch.column_names and ROW_COLUMN in batch.column_names:
        return f"{batch.column(FILE_COLUMN)[i].as_py()}, row {batch.column(ROW_COLUMN)[i].as_py()}"
    return f"row {i} of a batch"


def predict(ds, task, workers, threads=1, on_error="fail", ray_batch_size=None, udf=None, **kwargs):
    """`ds` with the task's columns added by `workers` actors of `threads` CPUs each. An actor gets
    `ray_batch_size` rows per call (default: the pipeline's streaming chunk, 1,024), which its pipeline
    sorts by length and runs `batch_size` texts per forward. `udf`: a subclass of Predict to use."""
    from ..pipelines import STREAM_CHUNK

    ray = _require_ray()
    ray_batch_size = ray_batch_size or STREAM_CHUNK
    return ds.map_batches(udf or Predict, batch_format="pyarrow", batch_size=ray_batch_size,
                          fn_constructor_kwargs=dict(task=task, on_error=on_error, threads=threads, **kwargs),
                          compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads)
