"""Texts from files and stdin for the front ends, read with a bound: one text is at most MAX_TEXT_BYTES,
so an endless file (/dev/zero) or one with no line breaks is one clear error, not a process that fills
its memory. Errors are ValueErrors that name the file and line."""
from __future__ import annotations

import sys

# Models read at most a few thousand tokens; a text longer than this (UTF-8 bytes) is a malformed input.
MAX_TEXT_BYTES = 1 << 20


def read_lines(f, name: str) -> list[str]:
    """Each line of a binary stream as text, read line by line: a line past MAX_TEXT_BYTES (an endless
    file such as /dev/zero, a file with no line breaks) stops with one line instead of filling memory."""
    texts = []
    while raw := f.readline(MAX_TEXT_BYTES + 1):
        n = len(texts) + 1
        if len(raw) > MAX_TEXT_BYTES and not raw.endswith(b"\n"):
            raise ValueError(f"{name}: line {n} is longer than {MAX_TEXT_BYTES} bytes, the limit for one text")
        raw = raw.removesuffix(b"\n").rstrip(b"\r")
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}: line {n} is not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})") from None
    return texts


def read_file(path: str, read):
    """`read(binary stream)` on a file or, for `-`, stdin; a missing or unreadable file is one ValueError."""
    try:
        if path == "-":
            return read(sys.stdin.buffer)
        with open(path, "rb") as f:
            return read(f)
    except FileNotFoundError:
        raise ValueError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a directory, not a text file") from None
    except OSError as e:
        raise ValueError(f"cannot read {'<stdin>' if path == '-' else path}: {e.strerror}") from None


def read_document(path: str, what: str) -> str:
    """A whole file (`-` for stdin) as one text, at most MAX_TEXT_BYTES, newlines as Python's text mode
    reads them."""
    name = "<stdin>" if path == "-" else path
    data = read_file(path, lambda f: f.read(MAX_TEXT_BYTES + 1))
    if len(data) > MAX_TEXT_BYTES:
        raise ValueError(f"{what} {name} is longer than {MAX_TEXT_BYTES} bytes, the limit for one text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{name} is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")
