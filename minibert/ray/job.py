"""A run: check everything, read, predict on an actor pool, write; the `--input` side of every task command."""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings

from . import actor
from .readers import ERROR_COLUMN, _require_ray, expand_paths, input_columns, read
from .readers import input_format as detect_format

SUCCESS = "_SUCCESS"  # written last into a complete output folder, as Spark and Hadoop do
OUTPUT_SUFFIXES = (".parquet", ".json", ".jsonl")  # the files minibert writes into an output folder


def check_output(output: str, overwrite: bool, inputs=()) -> None:
    """Refuse, before anything is read or deleted: an output that is, holds or lies inside one of `inputs`
    (the paths as given and the files they expand to); a file; a folder with files in it unless
    `overwrite`, and even then one that is not a complete minibert output (its `_SUCCESS` marker and
    only the files minibert writes). Nothing is deleted here: the new output replaces the old one only
    once it is complete (`run`)."""
    if "://" in output:
        return _check_remote_output(output, overwrite)
    out = os.path.realpath(output)
    for given in inputs:
        if "://" in str(given) or glob.has_magic(str(given)):
            continue
        path = os.path.realpath(given)
        if path == out:
            raise ValueError(f"--output {output} is the input {given}: minibert would write over what it reads; "
                             "give another folder")
        if _within(path, out):
            raise ValueError(f"--output {output} holds the input {given}: replacing the folder would delete it; "
                             "give another folder")
        if _within(out, path):
            raise ValueError(f"--output {output} lies inside the input folder {given}: its files would be read as "
                             "inputs; give a folder outside it")
    if os.path.isfile(out):
        raise FileExistsError(f"--output {output} is a file; give a folder")
    if os.path.isdir(out) and os.listdir(out):
        if not overwrite:
            raise FileExistsError(f"--output {output} exists and is not empty (add --overwrite to replace it)")
        _check_minibert_output(output, out)


def _within(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder and path != folder


def _check_minibert_output(output: str, folder: str) -> None:
    """--overwrite replaces only what minibert wrote: a marked, complete output folder of its own files."""
    marker = os.path.join(folder, SUCCESS)
    try:
        with open(marker, encoding="utf-8") as f:
            ours = json.load(f).get("writer") == "minibert"
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise FileExistsError(f"--output {output} has no minibert {SUCCESS} marker, so it is not a complete minibert "
                              "output (files of your own, or a run that was stopped); --overwrite replaces only a "
                              "previous minibert output: remove the folder yourself or give another one")
    for entry in os.scandir(folder):
        if entry.name != SUCCESS and not (entry.is_file(follow_symlinks=False) and entry.name.endswith(OUTPUT_SUFFIXES)):
            raise FileExistsError(f"--output {output} holds {entry.name}, which minibert did not write; --overwrite "
                                  "replaces only a previous minibert output: remove it yourself or give another folder")


def _check_remote_output(output: str, overwrite: bool) -> None:
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(output)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise FileExistsError(f"--output {output} is a file; give a folder")
    if info.type == pafs.FileType.Directory and fs.get_file_info(pafs.FileSelector(root)) and not overwrite:
        raise FileExistsError(f"--output {output} exists and is not empty (add --overwrite to replace it)")


def _staging_folder(output: str) -> str:
    """A new hidden folder beside `output` to write into: hidden, so that a reader of the parent folder
    (minibert's own, pyarrow's, Spark's) passes over it."""
    parent, name = os.path.split(os.path.abspath(output).rstrip(os.sep))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{name}.minibert-", dir=parent)


def _publish(staging: str, output: str, marker: dict) -> None:
    """Mark `staging` complete and put it in `output`'s place; a previous output goes only once the new
    one is there (between the two renames, for an instant, neither is at `output`)."""
    with open(os.path.join(staging, SUCCESS), "w", encoding="utf-8") as f:
        json.dump(marker, f)
    out = os.path.abspath(output)
    old = None
    if os.path.isdir(out) and os.listdir(out):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=os.path.dirname(out))
        os.rmdir(old)
        os.rename(out, old)
    try:
        os.replace(staging, out)  # onto a missing or empty folder
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class _StopSignals:
    """SIGTERM, like Ctrl-C, unwinds the run (so its staging folder is removed) instead of killing the
    process where it stands. `ray.init` installs its own SIGTERM handler, so `arm` runs again after it.

    Each signal is also remembered, whichever handler took it: Python writes every caught signal's number
    to the wakeup fd (`signal.set_wakeup_fd`), which `check` reads. So a signal whose exception landed in
    code that swallows it, or that Ray's handler took during `ray.init`, still stops the run before it
    publishes anything."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received, self.previous, self.wakeup = [], {}, None

    def _stop(self, signum, frame):
        self.received.append(signum)  # even if someone replaced the wakeup fd
        self.check()

    def check(self) -> None:
        if self.wakeup is not None:
            try:
                self.received += [n for n in self.wakeup[0].recv(4096) if n in self.SIGNALS]
            except BlockingIOError:  # nothing written since the last check
                pass
        if self.received:
            raise KeyboardInterrupt if self.received[0] == signal.SIGINT else SystemExit(128 + self.received[0])

    def arm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if self.wakeup is None:
            import socket

            self.wakeup = socket.socketpair()
            for s in self.wakeup:
                s.setblocking(False)
            self.previous_fd = signal.set_wakeup_fd(self.wakeup[1].fileno(), warn_on_full_buffer=False)
        for sig in self.SIGNALS:
            previous = signal.signal(sig, self._stop)
            self.previous.setdefault(sig, previous)  # the handler from before the run, restored after it

    def __enter__(self):
        self.arm()
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self.wakeup is not None:
            signal.set_wakeup_fd(self.previous_fd)
            for s in self.wakeup:
                s.close()


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


def run(task: str, paths, output: str, *, model=None, input_format=None, column=None, pair_column=None,
        output_format="parquet", overwrite=False, workers=None, threads=1, address=None, on_error="fail",
        batch_size=None, max_length=None, quiet=False, **options) -> int:
    """Read `paths` (files, folders, globs), run `task` on an actor pool, write the rows with the task's
    columns added to the folder `output`; a summary on stderr. `options`: the task's call options (those
    its command passes to its one-process run: `top_k=3`, `candidate_labels=[...]`). What `minibert <task>
    --input ...` runs."""
    from ..pipelines import get_task

    ray = _require_ray()
    spec = get_task(task)
    task = spec.name
    # Everything that can be wrong is found here, before Ray or a model starts.
    if not output:
        raise ValueError("--input needs --output FOLDER")
    if output.endswith(".npy"):
        raise ValueError(f"with --input, --output is a folder (Parquet or JSON lines), not a .npy file: {output}")
    for name, value in (("workers", workers), ("threads", threads)):
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be at least 1")
    column = column or spec.column
    pair_column = pair_column or spec.pair_column
    files = expand_paths(paths)
    fmt = input_format or detect_format(files)
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
    taken = set(spec.output_columns(options)) & set(columns or [])
    if taken:
        raise ValueError(f"{files[0]}: the input has a column {sorted(taken)[0]!r}, which the output adds; rename it")
    if address:
        check_address(address)
    if model is not None:  # a wrong --model fails now; a Hub id is fetched into the cache once, here
        from ..checkpoint import resolve

        local = resolve(model)
        # A local Ray shares this machine's files; on a cluster each node resolves a Hub id itself.
        model = os.path.abspath(local) if not address or os.path.isdir(model) else model
    check_output(output, overwrite, [*([paths] if isinstance(paths, (str, os.PathLike)) else paths), *files])

    started = time.perf_counter()
    remote = "://" in output
    target = output if remote else _staging_folder(output)
    try:
        with _StopSignals() as stop:
            ray_started, workers = _write(ray, target, files, fmt, task, column, pair_column, address, quiet,
                                          workers, threads, on_error, output_format, overwrite and remote,
                                          dict(model=model, batch_size=batch_size, max_length=max_length, **options),
                                          stop)
            rows, bad = count_output(target, output_format)
            stop.check()  # a stop whose exception something swallowed on the way
            marker = {"writer": "minibert", "version": _version(), "task": task, "rows": rows, "errors": bad}
            if remote:
                _mark_remote(output, marker)
            else:
                _publish(target, output, marker)
    except BaseException:
        if not remote:
            shutil.rmtree(target, ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    errors = f", {bad} with an error (see the `error` column)" if bad else ""
    print(f"minibert: {rows} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):.1f} rows/s; Ray start-up "
          f"{ray_started:.1f} s) with {workers} worker(s) x {threads} thread(s){errors}; wrote {output}",
          file=sys.stderr)
    return 0


def _write(ray, target, files, fmt, task, column, pair_column, address, quiet, workers, threads, on_error,
           output_format, empty_first, predict_kwargs, stop) -> tuple[float, int]:
    """Start (or join) Ray, read, predict, write into `target`; (Ray's start-up seconds, workers)."""
    with _stderr_closed_if(quiet) as say, warnings.catch_warnings():
        # An empty input gives the actor pool no rows, which Ray warns of: an empty output is right.
        warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
        return _run_ray(ray, target, files, fmt, task, column, pair_column, address, quiet, workers, threads,
                        on_error, output_format, empty_first, predict_kwargs, say, stop)


@contextlib.contextmanager
def _stderr_closed_if(quiet: bool):
    """With --quiet, file descriptor 2 goes to /dev/null while Ray runs: its C++ core worker and its
    processes print there directly (an error-level line about actor constructor arguments, a token
    authentication notice) what no Python logging setting reaches and a user cannot act on. A failure
    still reaches minibert as an exception, printed after. Yields the function that prints minibert's own
    warnings where stderr was."""
    if not quiet:
        yield lambda line: print(line, file=sys.stderr)
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)

    def say(line: str) -> None:
        try:
            direct = sys.stderr.fileno() == 2
        except (AttributeError, OSError, ValueError):  # sys.stderr replaced (a test capturing it)
            direct = False
        if direct:
            os.write(saved, (line + "\n").encode())
        else:
            print(line, file=sys.stderr)

    try:
        yield say
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _run_ray(ray, target, files, fmt, task, column, pair_column, address, quiet, workers, threads, on_error,
             output_format, empty_first, predict_kwargs, say, stop) -> tuple[float, int]:
    started = time.perf_counter()
    own_ray = not ray.is_initialized()
    if own_ray:
        try:
            # A local Ray inherits this environment (PYTHONPATH included), so its workers import this minibert.
            ray.init(address=address, include_dashboard=False, logging_level="ERROR" if quiet else "WARNING",
                     log_to_driver=False)
        except Exception as e:  # Ray raises a bare Exception when its node times out starting (an overloaded machine)
            raise ConnectionError(f"cannot reach the Ray cluster at {address}: {e}" if address
                                  else f"cannot start a local Ray: {e}") from None
        stop.arm()  # ray.init replaced the SIGTERM handler with its own
        stop.check()  # a signal that Ray's handler took while it started
    data_logger = logging.getLogger("ray.data")
    data_level = data_logger.level
    try:
        ctx = ray.data.DataContext.get_current()  # this driver's settings for the datasets it runs
        ctx.execution_options.preserve_order = True  # output files in input order (see docs/ray.md)
        # Progress bars in a terminal only: elsewhere Ray Data logs a dozen progress lines every 10 s.
        ctx.enable_progress_bars = not quiet and sys.stdout.isatty() and sys.stderr.isatty()
        # Its INFO lines (execution plans, "Starting execution"), its "progress bars disabled" warning and,
        # on a failed row, its advice to set max_errored_blocks (minibert's answer is --on-error record)
        # would come before minibert's own one line.
        data_logger.setLevel(logging.CRITICAL)
        workers = _check_cpus(ray, workers, threads, say)
        ray_started = time.perf_counter() - started
        ds = read(files, fmt, column, pair_column)
        ds = actor.predict(ds, task, workers, threads, on_error, column=column, pair_column=pair_column,
                           **predict_kwargs)
        if empty_first:  # a remote folder cannot be swapped in one rename: emptied, then written
            import pyarrow.fs as pafs

            fs, root = pafs.FileSystem.from_uri(target)
            if fs.get_file_info(root).type == pafs.FileType.Directory:
                fs.delete_dir_contents(root)
        try:
            if output_format == "parquet":
                ds.write_parquet(target, ray_remote_args={"num_cpus": 0})
            else:
                ds.write_datasink(_jsonl_sink(target), ray_remote_args={"num_cpus": 0})
        except Exception as e:
            raise _user_error(e) from None
    finally:
        data_logger.setLevel(data_level)
        if own_ray:
            ray.shutdown()
    return ray_started, workers


def _check_cpus(ray, workers: int | None, threads: int, say) -> int:
    """The number of workers, refused when workers x threads asks for more CPUs than the cluster has
    (Ray would wait forever for actors it cannot place), with a warning when they leave none for reading."""
    cpus = int(ray.cluster_resources().get("CPU", 0))
    given = workers is not None
    workers = workers or max(1, cpus // threads)
    if workers * threads > cpus:
        raise ValueError(f"--workers {workers} x --threads {threads} asks for {workers * threads} CPUs, but the Ray "
                         f"cluster has {cpus}: Ray would wait for them forever; ask for at most {cpus} in all")
    if given and workers * threads == cpus and cpus > 1:
        say(f"minibert: warning: --workers {workers} x --threads {threads} takes all {cpus} CPUs of the Ray cluster, "
            "leaving none for reading the input; one worker fewer is often as fast")
    return workers


def _jsonl_sink(path: str):
    """A Ray datasink writing `*.jsonl` files, one plain JSON object per line (`/` as it is, non-ASCII
    as UTF-8, NaN as null): Ray's own `write_json` writes `*.json` through pandas, which escapes `/`."""
    from ray.data.datasource import BlockBasedFileDatasink

    class JsonLines(BlockBasedFileDatasink):
        def __init__(self):
            super().__init__(path, file_format="jsonl")

        def write_block_to_file(self, block, file):
            lines = [_json_line(row) for row in block.to_arrow().to_pylist()]
            file.write("".join(lines).encode("utf-8"))

    return JsonLines()


def _json_line(row: dict) -> str:
    try:
        return json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError:  # NaN or infinity, which JSON cannot hold
        return json.dumps(_finite_or_none(row), ensure_ascii=False) + "\n"


def _finite_or_none(value):
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def _mark_remote(output: str, marker: dict) -> None:
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(output)
    with fs.open_output_stream(f"{root.rstrip('/')}/{SUCCESS}") as f:
        f.write(json.dumps(marker).encode())


def _version() -> str:
    from .. import __version__

    return __version__


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
