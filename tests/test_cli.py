"""The `minibert` command, run as a user runs it: a subprocess, stdout a pipe, stderr read."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "minibert", *args], input=stdin, capture_output=True, env=ENV,
                          timeout=300)


def no_traceback(p):
    assert b"Traceback" not in p.stderr, p.stderr.decode()


def test_help_is_fast_and_does_not_load_tensorflow():
    code = ("import sys, minibert.cli as c\n"
            "try:\n    c.main(['classify', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported for --help'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, env=ENV, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    assert b"--top-k" in p.stdout


def test_classify_file_keeps_order_and_blank_lines(tmp_path):
    lines = ["I love this film", "", "I hate this so much!", "word " * 1000, "   ", "this is the best thing happened to me"]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    p = run("classify", "--file", str(path), "--batch-size", "2")
    assert p.returncode == 0, p.stderr.decode()
    no_traceback(p)
    records = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert [r["text"] for r in records] == lines
    assert records[0]["label"] == "POSITIVE" and records[2]["label"] == "NEGATIVE" and records[5]["label"] == "POSITIVE"
    assert all(0.5 <= r["score"] <= 1 for r in records)


def test_classify_stdin_tsv_and_top_k():
    p = run("classify", "--file", "-", "--format", "tsv", stdin="great\nawful\n".encode())
    assert p.returncode == 0, p.stderr.decode()
    rows = [line.split("\t") for line in p.stdout.decode().splitlines()]
    assert [(r[0], r[2]) for r in rows] == [("POSITIVE", "great"), ("NEGATIVE", "awful")]
    p = run("classify", "great", "--top-k", "2")
    rec = json.loads(p.stdout)
    assert [x["label"] for x in rec["labels"]] == ["POSITIVE", "NEGATIVE"]


def test_embed_npy_and_jsonl(tmp_path, minilm):
    out = tmp_path / "e.npy"
    p = run("embed", "hello world", "a cat", "--output", str(out))
    assert p.returncode == 0, p.stderr.decode()
    arr = np.load(out)
    assert arr.shape == (2, 384) and np.allclose(np.linalg.norm(arr, axis=1), 1, atol=1e-5)
    p = run("embed", "hello world")
    vec = np.array(json.loads(p.stdout)["embedding"])
    assert np.abs(vec - arr[0]).max() < 1e-6
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    p = run("embed", "--file", str(empty), "--output", str(out))  # an empty file gives an empty (0, 384) array
    assert p.returncode == 0, p.stderr.decode()
    assert np.load(out).shape == (0, 384)


def test_tokenize_seed():
    p = run("tokenize", "I've been waiting for a HuggingFace course my whole life.")
    rec = json.loads(p.stdout)
    assert rec["ids"] == [101, 1045, 1005, 2310, 2042, 3403, 2005, 1037, 17662, 12172, 2607, 2026, 2878, 2166, 1012, 102]
    assert rec["tokens"][:3] == ["[CLS]", "i", "'"]


@pytest.mark.parametrize("args,stdin,message", [
    (["classify", "--model", "/no/such/model", "hi"], None, b"no such folder: /no/such/model"),
    (["classify", "--file", "/no/such/file.txt"], None, b"no such file: /no/such/file.txt"),
    (["classify", "--file", "-"], b"fine\n\xff\xfe bad\n", b"<stdin>: line 2 is not valid UTF-8"),
    (["classify", "--frobnicate", "hi"], None, b"unrecognized arguments: --frobnicate"),
    (["classify", "--model", "distilbert-base-uncased-finetuned-sst-2-english", "hi"], None, b"pass a local folder"),
    (["classify"], None, b"give TEXT arguments or --file"),
    (["classify", "--batch-size", "0", "x"], None, b"--batch-size must be at least 1"),
])
def test_errors_are_one_clear_line(args, stdin, message):
    p = run(*args, stdin=stdin)
    assert p.returncode != 0
    no_traceback(p)
    assert message in p.stderr, p.stderr.decode()
    assert p.stdout == b""
