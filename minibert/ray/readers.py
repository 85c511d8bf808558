"""Reading: every row of text lines, JSON lines, CSV and Parquet once, with its file and row number.

A malformed row (invalid UTF-8, a line past the text limit, a JSON line that is not an object, a value
that is not a string) becomes an `error` value on its row instead of failing the whole file or dropping
the row. Nothing here imports Ray or pyarrow at import time.
"""
from __future__ import annotations

import glob
import json
import os

from ..textio import MAX_TEXT_BYTES  # a longer text is a malformed row, not tokenized whole in an actor

INSTALL_HINT = 'Ray is not installed; install the extra: pip install "minibert-tf[ray]"'
# Columns minibert adds: where a row came from, and what went wrong with it (`--on-error record`).
FILE_COLUMN, ROW_COLUMN, ERROR_COLUMN = "input_file", "input_row", "error"
BLOCK_ROWS = 4096  # rows per block a reader yields: bounds a read task's memory on one huge file
FORMATS = {".txt": "text", ".text": "text", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
           ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")  # Arrow decompresses these while streaming text formats


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the `data` extra: pyarrow, pandas)
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return ray


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
        for name in names:
            if name not in text_columns:
                cols[name] = _json_column(path, name, cols[name], rows, errors)
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
            except RecursionError:
                error, record = "JSON nested deeper than Python's reader goes", {}
        if error is None and not isinstance(record, dict):
            error, record = f"a JSON {type(record).__name__}, expected an object", {}
        for name in text_columns:
            if error is None and name not in record:
                error = f"no field {name!r}"
            elif error is None and not isinstance(record[name], str):
                error = f"{name!r} is {'null' if record[name] is None else type(record[name]).__name__}, expected a string"
        if error is not None:  # the row stays, its value as JSON text, so one bad value cannot break the block's types
            record = {**record, **{name: _as_text(record.get(name)) for name in text_columns}}
        rows.append(number)
        records.append(record)
        errors.append(error and f"{path}, row {number}: {error}")
        if len(rows) == BLOCK_ROWS:
            yield block()
            rows, records, errors = [], [], []
    if rows:
        yield block()


def _kind(value) -> str:
    """A JSON value's kind, as an error names it."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _json_column(path, name, values, rows, errors):
    """A JSON field other than the text columns as one Arrow column. A value whose kind differs from the
    field's first value in the block (`"n": 1`, then `"n": "one"`) makes its row an error row, so one
    row cannot stop the run with Arrow's message; a field Arrow still cannot hold (nesting past its
    limit, objects of differing shapes) is kept as JSON text."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowException, RecursionError):
        pass
    first = next((i for i, v in enumerate(values) if v is not None), None)
    kind = _kind(values[first])
    values = list(values)
    for i, v in enumerate(values):
        if v is not None and _kind(v) != kind:
            shown = json.dumps(v, ensure_ascii=False)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            errors[i] = errors[i] or (f"{path}, row {rows[i]}: field {name!r} is a {_kind(v)} ({shown}), but a "
                                      f"{kind} in row {rows[first]}")
            values[i] = None
    try:
        return pa.array(values)
    except (pa.ArrowException, RecursionError):
        return _str_array([_as_text(v) for v in values])


def _as_text(value) -> str | None:
    """A JSON value that is not a string, kept as its JSON text (123 -> "123") in a string column."""
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)


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
        values = [None if v is None else str(v) for v in array.to_pylist()]  # kept, as text, beside the error
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
                except (json.JSONDecodeError, RecursionError):
                    return None  # the row will carry its own error
                return list(record) if isinstance(record, dict) else None
    return None
