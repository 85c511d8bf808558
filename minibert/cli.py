"""The `minibert` command: every pipeline task (classify, ner, qa, fill-mask, zero-shot, embed, rerank), and
tokenize and trace, on texts from the arguments, a file or stdin; with `--input`, on datasets through Ray.

Each task's command (its flags, how an input line becomes a pipeline input, how a record prints) is
declared in its module under `minibert/pipelines/`; this module reads `TASKS` and knows nothing else
about tasks. Output is a table when stdout is a terminal and JSON lines otherwise (or as `--format`
says). TensorFlow is imported only by the commands that run a model, so `--help` answers at once.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import stat
import sys

from ._tensorflow import load_tensorflow_quietly
from .frontend import UsageError, add_engine_argument, resolve_model
from .pipelines import TASKS
from .pipelines.base import count
from .ray import READERS
from .textio import read_file, read_lines


CLIError = UsageError  # the name the commands raise: one class for every front end


# -- input ---------------------------------------------------------------------------------------
def read_texts(args) -> tuple[list[str], bool]:
    """Texts from the positional arguments or from --file (one per line, `-` = stdin). Blank lines stay."""
    piped = args.file is None and not args.texts and not sys.stdin.isatty()
    if piped:
        args.file = "-"  # `cat lines.txt | minibert classify`, as grep and wc read a pipe
    if args.file is None:
        if not args.texts:
            raise CLIError("give TEXT arguments, --file PATH, or lines on standard input")
        for n, text in enumerate(args.texts, 1):
            _check_argument_bytes(text, f"TEXT argument {n}")
        return list(args.texts), False
    if args.texts:
        raise CLIError("give either TEXT arguments or --file, not both")
    name = "<stdin>" if args.file == "-" else args.file
    texts = read_file(args.file, lambda f: read_lines(f, name))
    if piped and not texts:
        raise CLIError("no input: give TEXT arguments, --file PATH, or lines on standard input")
    return texts, True


def _check_argument_bytes(text: str, what: str) -> None:
    """Python decodes the command line as UTF-8 with each invalid byte kept as a surrogate (0xff as '\\udcff'):
    name the byte as the user typed it, not the surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")  # the bytes as given
            raw.decode("utf-8")
        except UnicodeEncodeError:
            return  # a surrogate that no byte gives: the tokenizer's check names it
        except UnicodeDecodeError as e:
            raise CLIError(f"{what} is not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})") from None


def progress(total: int, args, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, unit="text", disable=not (enabled and sys.stderr.isatty()) or args.quiet)


def output_format(args, formats=("table", "jsonl", "tsv")) -> str:
    """--format, else the command's first format on a terminal and JSON lines into a pipe or file."""
    return args.format or (formats[0] if sys.stdout.isatty() else "jsonl")


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Left-aligned columns; the last column is cut to the terminal width."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    room = max(20, shutil.get_terminal_size().columns - sum(w + 2 for w in widths))
    for r in [header, *rows]:
        last = str(r[-1])
        last = last if len(last) <= room else last[: room - 1] + "…"
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + ("  " if widths else "") + last)


class JsonLines:
    """Every JSON record the CLI prints goes through `line`. JSON has no NaN or Infinity (`NaN` would make the
    line unreadable to any JSON parser), and a model with broken weights gives them: such numbers are written as
    null, and `close` then names the inputs they came from on stderr."""

    def __init__(self, from_file: bool):
        self.from_file, self.nulled = from_file, []

    def line(self, record, index: int | None = None) -> str:
        clean, bad = _nulls_for_nonfinite(record)
        if bad:
            self.nulled.append("the trace" if index is None else
                               f"{'line' if self.from_file else 'argument'} {index + 1}")
        return json.dumps(clean, ensure_ascii=False, allow_nan=False)

    def close(self) -> None:
        if self.nulled:
            shown = ", ".join(self.nulled[:5]) + (f" and {len(self.nulled) - 5} more" if len(self.nulled) > 5 else "")
            print(f"minibert: warning: NaN or infinite numbers written as null (JSON has none) in the output for "
                  f"{shown}: are the model's weights broken?", file=sys.stderr)


def _nulls_for_nonfinite(value):
    """`value` with every NaN or infinite float replaced by None, and whether there was one. A numpy
    vector (an embedding) is written as floats to 7 decimals, about float32's precision."""
    if getattr(value, "ndim", None) == 1:
        value = [round(float(x), 7) for x in value]
    if isinstance(value, float):
        return (value, False) if math.isfinite(value) else (None, True)
    if isinstance(value, dict):
        items = [(k, *_nulls_for_nonfinite(v)) for k, v in value.items()]
        return {k: v for k, v, _ in items}, any(b for _, _, b in items)
    if isinstance(value, (list, tuple)):
        items = [_nulls_for_nonfinite(v) for v in value]
        return [v for v, _ in items], any(b for _, b in items)
    return value, False


def _tsv(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")


# -- the task commands ---------------------------------------------------------------------------
def cmd_task(args) -> int:
    """Any task: read inputs, run the task's pipeline streamed, one result per input, in order."""
    spec, cmd = args.task, args.task.command
    if getattr(args, "input", None):  # a dataset, on Ray Data: the same options
        options = cmd.options(args)
        _check_default_model(spec, args)
        return task_on_ray(spec, args, options)
    check_no_input_options(args, output_is_input_only=not cmd.vectors)  # a vector command's --output is a .npy file
    options = cmd.options(args)
    make_input = cmd.make_input(args)
    texts, from_file = read_texts(args)
    inputs = []
    for n, text in enumerate(texts, 1):  # bad lines fail here, before any model is loaded
        try:
            inputs.append(make_input(text))
        except ValueError as e:
            raise CLIError(f"{'line' if from_file else 'TEXT argument'} {n}: {e}") from None
    if cmd.vectors and args.output:
        if not args.output.endswith(".npy"):
            raise CLIError(f"--output must end in .npy, got {args.output}")
        folder = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(folder):
            raise CLIError(f"cannot write {args.output}: no folder {folder}")
    _check_default_model(spec, args)
    resolve_model(args)
    from .engine import engine_name

    if engine_name(args.engine) != "litert":  # on LiteRT a model converted before runs without TensorFlow (runtime.py)
        load_tensorflow_quietly()
    from .pipelines import pipeline

    pipe = pipeline(spec.name, model=args.model, batch_size=args.batch_size, max_length=args.max_length,
                    engine=args.engine)
    positions = pipe.model.config.max_sequence_length
    if args.max_length and args.max_length > positions:  # before any input runs
        raise CLIError(f"--max-length {args.max_length} is more than the {positions} tokens this model takes: give "
                       f"--max-length {positions} or less")
    if pipe.max_length is None and pipe.tokenizer.model_max_length > positions:
        pipe.max_length = positions  # --max-length's default is the model's limit, not a larger one of its tokenizer
    names = spec.output_columns(options)
    fmt = output_format(args, cmd.formats)
    rows, vectors, jsonl = [], [], JsonLines(from_file)
    with progress(len(texts), args, from_file) as bar:
        results = enumerate(zip(texts, pipe(iter(inputs), **options)))  # streamed a batch at a time
        if cmd.arrange is not None:  # the command orders them itself: all results first
            results = cmd.arrange(list(results), args)
        for i, (text, res) in results:
            full = spec.record(res, options)
            rec = {cmd.input_name: text, **{name: full[name] for name in names}}
            if cmd.vectors and args.output:
                vectors.append(rec[names[0]])
            elif fmt == "jsonl":
                print(jsonl.line(rec, i))
            elif fmt == "tsv":
                print("\t".join(_tsv(cell) for cell in [*cmd.cells(rec, args), text]))
            else:
                rows.append([*(cmd.table_cells or cmd.cells)(rec, args), text])
            bar.update(1)
            sys.stdout.flush()
    jsonl.close()
    if fmt == "table" and not (cmd.vectors and args.output):
        print_table([*cmd.header(args), cmd.input_name], rows)
    if cmd.vectors and args.output:
        import numpy as np

        size = spec.columns(options, pipe)[names[0]].size  # the vector's length, as the task's column states it
        arr = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, size), np.float32)
        bad = ~np.isfinite(arr).all(axis=1)
        if bad.any():  # NaN from broken weights: no file of numbers that are not numbers
            raise CLIError(f"{int(bad.sum())} embedding(s) hold NaN or infinity (the first: input line "
                           f"{int(np.argmax(bad)) + 1}): are the model's weights broken? {args.output} not written")
        write_atomically(args.output, lambda f: np.save(f, arr))
        print(f"wrote {arr.shape[0]} embeddings of size {arr.shape[1]} to {args.output}", file=sys.stderr)
    return 0


def _check_default_model(spec, args) -> None:
    if args.model is None and spec.default_model is None:
        raise CLIError(f"{args.command} has no offline default model: pass --model, a checkpoint folder or a Hub id "
                       f"such as {spec.example_model}")


def write_atomically(path: str, write) -> None:
    """`write(file)` into a temporary file beside `path`, renamed over it only once complete: a full disk
    or a Ctrl-C leaves the previous file as it was, never a truncated one."""
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        try:  # the mode the file had, or what open() would give a new one (mkstemp's is 0600)
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# -- datasets on Ray: the --input options --------------------------------------------------------
def add_ray_arguments(parser, spec) -> None:
    """The --input options on a task command's subparser. The task's own options, --batch-size (texts per
    forward), --model and --max-length keep their meaning; a command that already has --output (embed's
    .npy file) shares it: a folder here."""
    g = parser.add_argument_group("datasets on Ray (pip install \"minibert-tf[ray]\")")
    g.add_argument("--input", "-i", nargs="+", metavar="PATH",
                   help="files, folders or globs to read with Ray Data (text lines, JSONL, CSV, Parquet)")
    g.add_argument("--input-format", choices=list(READERS), help="default: from the file extensions")
    g.add_argument("--column", help=f"the column of the texts (default: {spec.column})")
    if spec.pair_keys:
        g.add_argument("--pair-column", metavar="COLUMN",
                       help=f"the column of each row's {spec.pair_keys[1].replace('_', ' ')} "
                            f"(default: {spec.pair_column or 'none'})")
    try:
        g.add_argument("--output", "-o", metavar="FOLDER", help="with --input: the output folder")
    except argparse.ArgumentError:  # the command has its own --output (embed's .npy file): same name, a folder here
        pass
    g.add_argument("--output-format", choices=["parquet", "jsonl"], default="parquet")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    g.add_argument("--workers", type=count, metavar="N", help="model actors (default: the cluster's CPUs / --threads)")
    g.add_argument("--threads", type=count, default=1, metavar="N", help="CPUs (TensorFlow threads) per actor (default 1)")
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
            raise CLIError(f"--{name.replace('_', '-')} goes with --input (a dataset run on Ray)")


def task_on_ray(spec, args, options: dict) -> int:
    """`minibert <task> --input ...`: the command line's checks, then `minibert.ray.run` with keywords."""
    from . import ray
    from .engine import ENV

    if args.engine:  # Ray's workers are other processes: they read the engine from the environment they inherit
        os.environ[ENV] = args.engine
    if args.texts or args.file:
        raise CLIError("give --input or TEXT/--file, not both")
    if getattr(args, "pair", False):
        raise CLIError("with --input, name the second text's column with --pair-column instead of --pair")
    return ray.run(spec.name, args.input, args.output, model=args.model, input_format=args.input_format,
                   column=args.column, pair_column=getattr(args, "pair_column", None), output_format=args.output_format,
                   overwrite=args.overwrite, workers=args.workers, threads=args.threads, address=args.address,
                   on_error=args.on_error, batch_size=args.batch_size, max_length=args.max_length, quiet=args.quiet,
                   **options)


def cmd_tokenize(args) -> int:
    texts, from_file = read_texts(args)
    from .tokenizer import AutoTokenizer

    if args.model is None:
        from . import default_model

        args.model = default_model.encoder_dir()
    tok = AutoTokenizer.from_pretrained(args.model)
    fmt, jsonl = output_format(args), JsonLines(from_file)
    for i, text in enumerate(texts):
        ids = tok(text, truncation=args.max_length is not None, max_length=args.max_length)["input_ids"]
        tokens = tok.convert_ids_to_tokens(ids)
        if fmt == "jsonl":
            print(jsonl.line({"text": text, "tokens": tokens, "ids": ids}, i))
        elif fmt == "tsv":
            print("\t".join([" ".join(tokens), " ".join(map(str, ids)), _tsv(text)]))
        else:
            print(text)
            print_table(["", "token", "id"], [[i, t, n] for i, (t, n) in enumerate(zip(tokens, ids))])
    return 0


def load_any_model(name):
    """The class that the checkpoint's config `architectures` names (any head), else the bare encoder."""
    from .auto import class_for_architecture
    from .config import AutoConfig

    config = AutoConfig.from_pretrained(name)
    return class_for_architecture(config).from_pretrained(name, config=config)


def cmd_trace(args) -> int:
    texts, _ = read_texts(args)
    if args.attention_png and not 0 <= args.text_index < len(texts):  # before the model loads
        raise CLIError(f"--text-index {args.text_index} is out of range: {len(texts)} text(s) given")
    if args.attention_png:
        try:
            import matplotlib  # noqa: F401  (the `plot` extra)
        except ImportError:
            raise CLIError("--attention-png needs matplotlib: pip install 'minibert-tf[plot]' "
                           "(or pip install matplotlib)") from None
    resolve_model(args)
    load_tensorflow_quietly()
    from . import trace as tr
    from .tokenizer import AutoTokenizer

    if args.model is None:
        from . import default_model

        args.model = default_model.path()
    model, tok = load_any_model(args.model), AutoTokenizer.from_pretrained(args.model)
    result = tr.trace(texts, model, tok, max_length=args.max_length)
    if args.attention_png:
        tr.plot_attention(result, args.attention_png, args.text_index, args.layer, args.head)
        print(f"wrote attention maps to {args.attention_png}", file=sys.stderr)
    if (args.format or ("text" if sys.stdout.isatty() else "json")) == "json":
        jsonl = JsonLines(False)
        print(jsonl.line(tr.to_json(result)))
        jsonl.close()
    else:
        print(tr.format_trace(result))
    return 0


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minibert", description="BERT-family inference in TensorFlow, offline by default.")
    p.add_argument("--version", action="version", version=f"minibert {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(sp, formats, default_model, max_length="the model's limit"):
        sp.add_argument("texts", nargs="*", metavar="TEXT", help="texts to process (or use --file)")
        sp.add_argument("--file", "-f", metavar="PATH", help="read one text per line from PATH (- for stdin)")
        sp.add_argument("--model", "-m", metavar="MODEL", help=f"checkpoint folder or Hub id (default: {default_model})")
        sp.add_argument("--max-length", type=count, metavar="N", help=f"truncate texts to N tokens (default: {max_length})")
        default = f"{formats[0]} on a terminal, else {'json' if 'json' in formats else 'jsonl'}" if len(formats) > 1 \
            else formats[0]
        sp.add_argument("--format", choices=formats, help=f"output format (default: {default})")

    for spec in TASKS.values():  # one command per task, declared in its module
        cmd = spec.command
        sp = sub.add_parser(cmd.verb, help=cmd.help, description=cmd.description)
        common(sp, list(cmd.formats), cmd.default_model)
        cmd.arguments(sp)
        sp.add_argument("--batch-size", type=count, metavar="N", help="most texts per forward pass (default 64)")
        add_engine_argument(sp)
        sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
        add_ray_arguments(sp, spec)
        sp.set_defaults(func=cmd_task, task=spec)

    t = sub.add_parser("tokenize", help="show tokens and ids", description="Tokens (with special tokens) and ids.")
    common(t, ["table", "jsonl", "tsv"], "the uncased MiniLM/DistilBERT vocabulary", max_length="no truncation")
    t.set_defaults(func=cmd_tokenize)

    r = sub.add_parser("trace", help="show every stage inside the model for some texts",
                       description="Tokens, ids, attention mask, each layer's output, the head's input, logits, "
                                   "softmax and labels: the course's Behind-the-pipeline walkthrough with real numbers.")
    common(r, ["text", "json"], "minibert's offline SST-2 sentiment model",
           max_length="the model's limit; a trace keeps every attention map, at most 1 GiB of them: about 512 "
                      "tokens of one text for a BERT-base model")
    r.add_argument("--attention-png", metavar="FILE", help="draw the attention maps (needs matplotlib)")
    r.add_argument("--layer", type=int, help="only this layer in the picture (0-based)")
    r.add_argument("--head", type=int, help="only this head in the picture (0-based)")
    r.add_argument("--text-index", type=int, default=0, help="which text to draw (default 0)")
    r.set_defaults(func=cmd_trace)

    s = sub.add_parser("serve", help="serve a model over HTTP with dynamic batching",
                       description="An HTTP inference server (text-embeddings-inference's routes, OpenAI's "
                                   "/v1/embeddings, a route per other task) that batches concurrent requests.")
    add_serve_arguments(s)
    s.set_defaults(func=cmd_serve)
    return p


# -- serve -------------------------------------------------------------------------------------------
def add_serve_arguments(p) -> None:
    """`minibert serve`'s flags; their defaults are the server's own (`serve/settings.py`)."""
    from .serve.settings import DEFAULTS as d

    p.add_argument("--model", "-m", metavar="MODEL", help="checkpoint folder or Hub id (default: the task's default model)")
    p.add_argument("--task", help="the task to serve (default: from the checkpoint's head; a bare encoder serves "
                                  "feature-extraction)")
    p.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host}: this machine only)")
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port}; 0 picks a free one, printed at start)")
    p.add_argument("--served-model-name", metavar="NAME",
                   help="the model's name in /info and /v1/embeddings answers (default: the model id or folder name)")
    p.add_argument("--api-key", metavar="KEY",
                   help="require `Authorization: Bearer KEY` on every route but GET /, /health, /ping and /metrics (as TEI)")
    p.add_argument("--max-length", type=count, metavar="N", help="the longest input in tokens (default: the model's)")
    add_engine_argument(p)
    g = p.add_argument_group("batching and limits")
    g.add_argument("--max-batch-tokens", type=count, default=d.max_batch_tokens, metavar="N",
                   help=f"tokens per model call (default {d.max_batch_tokens})")
    g.add_argument("--max-batch-requests", type=count, default=d.max_batch_requests, metavar="N",
                   help=f"inputs per model call (default {d.max_batch_requests})")
    g.add_argument("--batch-size", type=count, default=d.batch_size, metavar="N",
                   help=f"most texts per forward inside a model call, after sorting by length (default {d.batch_size})")
    g.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, metavar="MS",
                   help=f"how long a request waits for others to batch with when the model is idle (default {d.max_wait_ms:g})")
    g.add_argument("--max-concurrent-requests", type=count, default=d.max_concurrent_requests, metavar="N",
                   help=f"requests in the server at once; more get 429 at once (default {d.max_concurrent_requests})")
    g.add_argument("--max-client-batch-size", type=count, default=d.max_client_batch_size, metavar="N",
                   help=f"inputs in one request; more get 422 (default {d.max_client_batch_size})")
    g.add_argument("--payload-limit", type=count, default=d.payload_limit, metavar="BYTES",
                   help=f"the largest request body; larger ones get 413 (default {d.payload_limit})")
    g.add_argument("--read-timeout", type=float, default=d.read_timeout, metavar="S",
                   help=f"seconds a connection has to send a whole request (headers and body) once it opens or its "
                        f"previous answer is sent; then it is closed (default {d.read_timeout:g})")
    g.add_argument("--auto-truncate", action="store_true",
                   help="truncate inputs past the model's length instead of refusing them (422)")
    g.add_argument("--no-batching", action="store_true", help="one request per model call (for comparison)")
    r = p.add_argument_group("more than one machine: Ray Serve (pip install 'ray[serve]')")
    r.add_argument("--ray", action="store_true", help="serve the same app on Ray Serve, one model and batcher per replica")
    r.add_argument("--replicas", type=count, metavar="N", help="with --ray: copies of the model (default 1)")
    r.add_argument("--threads", type=count, default=d.threads, metavar="N",
                   help=f"with --ray: CPUs (TensorFlow threads) per replica (default {d.threads})")
    r.add_argument("--address", metavar="HEAD:6379", help="with --ray: join this Ray cluster (default: start a local one)")
    p.add_argument("--no-warm-up", action="store_true",
                   help="answer at once and compile each input shape on its first use (for development)")
    p.add_argument("--log-level", default=d.log_level, choices=["debug", "info", "warning", "error"],
                   help="info: one line per request (default)")


def cmd_serve(args) -> int:
    from . import serve

    given = {k: v for k, v in vars(args).items() if k in serve.Settings.names()}
    return serve.run(serve.Settings(**given, batching=not args.no_batching, warm_up=not args.no_warm_up))


def _version() -> str:
    from . import __version__

    return __version__


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `minibert classify ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CLIError, OSError, ValueError, TypeError, ImportError) as e:
        print(f"minibert: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line, with a way to see more
        if os.environ.get("MINIBERT_DEBUG"):
            raise
        print(f"minibert: internal error: {type(e).__name__}: {e} (set MINIBERT_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
