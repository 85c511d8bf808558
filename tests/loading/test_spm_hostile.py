"""Hostile SentencePiece model files (spm.model): each is refused at load with one line naming the file,
never a crash, a hang or an allocation of gigabytes; real models trained by `sentencepiece` still load and
tokenize as `sentencepiece` does.

The hostile files are real trained models with protobuf fields appended or replaced. The ones that crash,
hang or exhaust memory without the checks are loaded in a child process whose address space is capped and
whose run is timed, so that a regression fails the test instead of killing pytest.
"""
import json
import math
import os
import struct
import subprocess
import sys

import pytest

import minibert
from minibert import spm
from minibert.tokenizer import TokenizerError
from reference import sst2_train_texts

# deberta-v3's layout: [PAD] [CLS] [SEP] [UNK] first
SPECIALS = dict(pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]", unk_id=3,
                unk_piece="[UNK]")
# Fullwidth letters, NFKC ligatures (U+FDFA becomes 18 characters: the largest expansion of SentencePiece's own
# nmt_nfkc table), accents, CJK, spaces to collapse.
TEXTS = ["the film is a delight , and it 's funny .", "ＦＵＬＬ ｗｉｄｔｈ ﬁne ﬂow", "\ufdfa and \u3300",
         "Café naïve résumé", "東京 is big", "  spaced   out  text  ", ""]


# -- protobuf bytes ------------------------------------------------------------------------------
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def message(number: int, payload: bytes) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def piece(text, score: float = -20.0) -> bytes:
    """A ModelProto.pieces entry (SentencePiece: piece = 1, score = 2 as a float)."""
    raw = text.encode() if isinstance(text, str) else text
    return message(1, message(1, raw) + varint(2 << 3 | 5) + struct.pack("<f", score))


def top_fields(data: bytes) -> list[tuple[int, bytes]]:
    """(number, whole encoded field) of each top-level field of a well-formed model."""
    out, i = [], 0
    while i < len(data):
        start = i
        key, i = read_varint(data, i)
        length, i = read_varint(data, i)
        i += length
        out.append((key >> 3, data[start:i]))
    return out


def read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        value |= (data[i] & 0x7F) << shift
        i += 1
        if not data[i - 1] & 0x80:
            return value, i
        shift += 7


def with_charsmap(data: bytes, charsmap: bytes) -> bytes:
    """The model with its normalizer_spec replaced by one holding only `charsmap` (precompiled_charsmap = 2)."""
    return b"".join(message(3, message(2, charsmap)) if number == 3 else field for number, field in top_fields(data))


def one_rule_charsmap(key: int, replacement: bytes) -> bytes:
    """A precompiled_charsmap with one rule, the byte `key` -> `replacement`: a darts-clone double array (the
    root's offset 1 puts its node at 1; the key's unit at 1 ^ key, offset 1, has a leaf whose value unit, at
    key, points at offset 0 of the replacements) of one 256-unit block, then the NUL-ended replacement."""
    units = [0] * 256
    units[0] = 1 << 10
    units[1 ^ key] = key | 1 << 8 | 1 << 10
    units[key] = 1 << 31  # a value unit: replacement at offset 0
    trie = struct.pack("<256I", *units)
    return struct.pack("<I", len(trie)) + trie + replacement + b"\0"


# -- models --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """model_type -> the bytes of a small model trained by sentencepiece (with its nmt_nfkc charsmap)."""
    import io

    import sentencepiece

    lines = sst2_train_texts(1000) + TEXTS[1:5] * 3
    out = {}
    for model_type in ("unigram", "bpe"):
        buf = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=600,
                                                 model_type=model_type, minloglevel=2, **SPECIALS)
        out[model_type] = buf.getvalue()
    return out


def folder_with(tmp_path, data: bytes, name: str = "m") -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "spm.model").write_bytes(data)
    return str(folder)


def read(tmp_path, data: bytes) -> spm.SentencePieceModel:
    path = tmp_path / "read.model"
    path.write_bytes(data)
    return spm.read_model(str(path))


def refused(folder: str) -> str:
    """The one-line refusal of the folder's spm.model, loaded in this process."""
    with pytest.raises(TokenizerError) as e:
        minibert.AutoTokenizer.from_pretrained(folder)
    message = str(e.value)
    assert "\n" not in message and message.startswith(os.path.join(folder, "spm.model")), message
    return message


CHILD = """
import json, resource, sys
import minibert
from minibert.tokenizer import TokenizerError
minibert.AutoTokenizer  # the tokenizer modules, imported before the cap
vm = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_AS)[1]))
try:
    tok = minibert.AutoTokenizer.from_pretrained(sys.argv[1])
    tok("a" * int(sys.argv[3]))
except TokenizerError as e:
    print(json.dumps(str(e)))
"""


def refused_in_child(folder: str, timeout: float = 30, memory: int = 2 << 30, encode: int = 0) -> str:
    """The one-line refusal of the folder's spm.model, loaded (then `encode` "a"s encoded) in a child process
    with `memory` bytes of address space over what it had after importing and `timeout` seconds."""
    env = {**os.environ, "RUST_BACKTRACE": "0", "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, folder, str(memory), str(encode)], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {folder} took over {timeout} s")
    assert done.returncode == 0, f"the child died (exit status {done.returncode}): {done.stderr[-2000:]}"
    lines = done.stdout.strip().splitlines()
    assert lines, f"{folder} loaded: it should have been refused"
    message = json.loads(lines[-1])
    assert "\n" not in message and message.startswith(os.path.join(folder, "spm.model")), message
    return message


# -- real models ---------------------------------------------------------------------------------
@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_trained_models_load_and_tokenize_as_sentencepiece(trained, tmp_path, model_type):
    """The checks pass SentencePiece's own files, nmt_nfkc charsmap included, and change nothing they give."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_proto=trained[model_type])
    tok = minibert.AutoTokenizer.from_pretrained(folder_with(tmp_path, trained[model_type]))
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        assert ids[0] == sp.piece_to_id("[CLS]") and ids[-1] == sp.piece_to_id("[SEP]")
        assert ids[1:-1] == sp.encode(text), text
    assert tok.decode(tok("the film is a delight")["input_ids"], skip_special_tokens=True) == "the film is a delight"
    m = spm.read_model(os.path.join(tmp_path, "m", "spm.model"))
    assert len(m.pieces) == 600 and m.precompiled_charsmap


def test_the_nmt_nfkc_charsmap_expands_within_the_bound(trained, tmp_path):
    """SentencePiece's default table makes a text at most 11 times longer in bytes (U+FDFA, 3 bytes, becomes
    33): under the bound, which counts bytes (in characters that rule alone would be 18)."""
    charsmap = read(tmp_path, trained["unigram"]).precompiled_charsmap
    factor, key, length = spm.charsmap_expansion(charsmap)
    assert (factor, key, length) == (11.0, "\ufdfa".encode(), 33)


def test_pieces_at_the_length_limit_load(trained, tmp_path):
    for model_type in ("unigram", "bpe"):
        long = "x" * 2048
        tok = minibert.AutoTokenizer.from_pretrained(folder_with(tmp_path, trained[model_type] + piece(long),
                                                                 model_type))
        assert tok.convert_tokens_to_ids([long]) == [600]


# -- hostile models ------------------------------------------------------------------------------
@pytest.mark.parametrize("model_type, length", [("unigram", 300_000), ("bpe", 1_000_000)])
def test_a_piece_past_the_length_limit_is_refused(trained, tmp_path, model_type, length):
    """Unigram: the tokenizers library's trie overflows its stack on such a piece (SIGSEGV); BPE: the merges
    are found by slicing every prefix, quadratic in the piece's length."""
    folder = folder_with(tmp_path, trained[model_type] + piece("x" * length))
    assert refused_in_child(folder) == (
        f"{folder}/spm.model: piece 600 is {length:,} bytes long; minibert refuses pieces over 2,048 bytes "
        "(SentencePiece learns none over 512 characters)")


def test_a_piece_one_byte_past_the_limit_is_refused(trained, tmp_path):
    folder = folder_with(tmp_path, trained["bpe"] + piece("é" * 1024 + "x"))
    assert refused(folder).endswith("piece 600 is 2,049 bytes long; minibert refuses pieces over 2,048 bytes "
                                    "(SentencePiece learns none over 512 characters)")


def test_a_charsmap_that_expands_past_the_bound_is_refused(trained, tmp_path):
    """'a' -> 4,000 'b's: 500 KB of text would become 2 GB (with the library's per-byte alignments, tens of
    GB), aborting the process. The bound is tokenizer.json normalizers' (MAX_EXPANSION)."""
    from tokenizers import normalizers

    charsmap = one_rule_charsmap(ord("a"), b"b" * 4000)
    assert normalizers.Precompiled(charsmap).normalize_str("cab") == "c" + "b" * 4000 + "b"  # the rule is real
    folder = folder_with(tmp_path, with_charsmap(trained["unigram"], charsmap))
    assert refused_in_child(folder, encode=500_000) == (
        f"{folder}/spm.model: its precompiled_charsmap can make a text 4,000 times longer in bytes ('a' "
        "becomes 4,000 bytes); minibert refuses more than 16 times, which lets a short text exhaust memory")


def test_a_charsmap_within_the_bound_loads(trained, tmp_path):
    folder = folder_with(tmp_path, with_charsmap(trained["unigram"], one_rule_charsmap(ord("a"), b"b" * 16)))
    tok = minibert.AutoTokenizer.from_pretrained(folder)
    assert tok.backend_tokenizer.normalizer.normalize_str("a") == "b" * 16


def test_a_charsmap_past_the_size_limit_is_refused(trained, tmp_path):
    charsmap = one_rule_charsmap(ord("a"), b"b") + b"\0" * (1 << 23)
    folder = folder_with(tmp_path, with_charsmap(trained["unigram"], charsmap))
    assert refused(folder) == (f"{folder}/spm.model: its precompiled_charsmap is 8,389,638 bytes; minibert refuses "
                               "more than 8,388,608 (SentencePiece's own are about 240 KB)")


@pytest.mark.parametrize("header, why", [
    (b"\xff\xff\xff\x7f", "its trie is said to be 2,147,483,647 bytes but the charsmap holds 1,026 after its header"),
    (b"\x02\x04\x00\x00", "its trie is said to be 1,026 bytes, not a whole number of 4-byte units"),
    (b"\x00\x00\x00\x00", "its trie is empty")], ids=["past-the-end", "not-whole-units", "empty"])
def test_a_charsmap_with_a_false_header_is_refused(trained, tmp_path, header, why):
    """The tokenizers library reserves what the header says (8 bytes a unit: 2**31 bytes make 4 GB) before
    reading, and aborts the process when that fails."""
    charsmap = header + one_rule_charsmap(ord("a"), b"b")[4:]
    folder = folder_with(tmp_path, with_charsmap(trained["unigram"], charsmap))
    assert refused_in_child(folder) == f"{folder}/spm.model: its precompiled_charsmap is malformed ({why})"


def test_a_charsmap_whose_rule_points_past_its_replacements_is_refused(trained, tmp_path):
    charsmap = bytearray(one_rule_charsmap(ord("a"), b"b"))
    struct.pack_into("<I", charsmap, 4 + 4 * ord("a"), 1 << 31 | 100)  # the value unit: offset 100 of 2 bytes
    folder = folder_with(tmp_path, with_charsmap(trained["unigram"], bytes(charsmap)))
    assert refused(folder) == (f"{folder}/spm.model: its precompiled_charsmap is malformed (a rule's replacement "
                               "starts at byte 100 of 2)")


@pytest.mark.slow  # a million pieces to write and read
def test_more_pieces_than_the_limit_are_refused_as_they_are_read(trained, tmp_path):
    """10**7 pieces (169 MB) made the process abort at 5.5 GB; the count is checked as each piece is read,
    so 2**20 + 1 are refused within the memory of 2**20."""
    n = 2**20 - 600 + 1
    extra = b"".join(b"\x0a\x0f\x0a\x08p%07d\x15\x00\x00\xa0\xc1" % i for i in range(n))  # "p0000000", -20.0
    folder = folder_with(tmp_path, trained["unigram"] + extra)
    assert refused_in_child(folder, timeout=60, memory=1 << 30) == (
        f"{folder}/spm.model: more than 1,048,576 pieces, minibert's limit (the largest real vocabularies have "
        "under a million)")


def test_pieces_holding_more_text_than_the_limit_are_refused(trained, tmp_path):
    """8,193 distinct pieces of 2,048 bytes (a 17 MB file): the Unigram trie would take some 5 GB."""
    extra = b"".join(piece(b"%08d" % i + b"x" * 2040) for i in range(8193))
    folder = folder_with(tmp_path, trained["unigram"] + extra)
    assert refused_in_child(folder, timeout=60) == (
        f"{folder}/spm.model: its pieces hold more than 16,777,216 bytes of text; minibert refuses more (real "
        "vocabularies hold a few megabytes), which lets a small file take gigabytes")


def test_the_work_of_finding_bpe_merges_is_bounded(trained, tmp_path):
    """1,024 pieces of one repeated letter (a 1 MB file): 500,000 merges of 350 million characters, each split
    point sliced and hashed."""
    data = trained["bpe"] + b"".join(piece("ж" * k) for k in range(1, 1025))
    work = sum(len(p.piece) ** 2 for p in read(tmp_path, data).pieces)
    folder = folder_with(tmp_path, data)
    assert refused_in_child(folder, timeout=60) == (
        f"{folder}/spm.model: finding its BPE merges would take {work:,} steps (the sum of its pieces' squared "
        "lengths); minibert refuses more than 134,217,728, which lets a small file take minutes and gigabytes")


def test_the_number_of_bpe_merges_is_bounded(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(spm, "MAX_MERGES", 100, raising=False)
    folder = folder_with(tmp_path, trained["bpe"])
    assert refused(folder) == (f"{folder}/spm.model: more than 100 BPE merges; minibert refuses more (real models "
                               "have about two a piece)")


def test_a_zero_filled_file_is_refused_on_its_first_byte(tmp_path):
    """Field number 0 is no protobuf field: 200 MB of zeros used to be scanned for minutes."""
    folder = tmp_path / "m"
    folder.mkdir()
    with open(folder / "spm.model", "wb") as f:
        f.truncate(64 << 20)
    assert refused_in_child(str(folder), timeout=20) == (
        f"{folder}/spm.model is not a SentencePiece model (a field numbered 0 at byte 0)")


def test_a_file_past_the_size_limit_is_refused_before_it_is_read(trained, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    with open(folder / "spm.model", "wb") as f:
        f.write(trained["unigram"])
        f.truncate(2**28 + 1)
    assert refused_in_child(str(folder), timeout=20, memory=256 << 20) == (
        f"{folder}/spm.model is 268,435,457 bytes; minibert refuses SentencePiece models over 268,435,456 bytes "
        "(real ones are a few megabytes)")


@pytest.mark.parametrize("extra, why", [
    (message(6, b"x"), "field 6 at byte {at}: a ModelProto has only fields 1 to 5"),
    (message(200, b"x"), "field 200 at byte {at}: a ModelProto has only fields 1 to 5"),
    (varint(1 << 3) + varint(7), "field 1 at byte {at} has wire type 0, not 2 (length-delimited)"),
    (message(2, varint(0) + varint(0)), "a field numbered 0 at byte {at_value}")],
    ids=["field-6", "field-200", "pieces-as-varint", "nested-field-0"])
def test_unknown_fields_and_wire_types_are_refused(trained, tmp_path, extra, why):
    at = len(trained["unigram"])
    at_value = at + 2  # a one-byte key and a one-byte length
    folder = folder_with(tmp_path, trained["unigram"] + extra)
    why = why.format(at=at, at_value=at_value)
    assert refused(folder) == f"{folder}/spm.model is not a SentencePiece model ({why})"


def test_a_file_that_is_json_is_refused_on_its_first_byte(tmp_path):
    folder = folder_with(tmp_path, b'{"model": {"type": "Unigram"}}' * 100_000)
    assert refused(folder) == (f"{folder}/spm.model is not a SentencePiece model (field 15 at byte 0: a ModelProto "
                               "has only fields 1 to 5)")


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf])
def test_a_score_that_is_not_finite_is_refused(trained, tmp_path, score):
    """Such a score loaded, then failed the first encode ("invalid type: null, expected f64")."""
    folder = folder_with(tmp_path, trained["unigram"] + piece("zzz", score))
    assert refused(folder) == f"{folder}/spm.model: piece 600 'zzz' has score {score}; scores must be finite"


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_a_repeated_piece_is_refused(trained, tmp_path, model_type):
    """SentencePiece refuses such a model; the tokenizers library would give the piece one of its two ids."""
    first = read(tmp_path, trained[model_type]).pieces[10].piece
    folder = folder_with(tmp_path, trained[model_type] + piece(first))
    assert refused(folder) == (f"{folder}/spm.model: piece 600 {first!r} is already piece 10; each piece must be "
                               "listed once")


def test_the_field_budget_bounds_the_scan(trained, tmp_path, monkeypatch):
    """Millions of tiny fields inside trainer_spec (which is otherwise scanned whole) are refused past the
    budget instead of taking minutes."""
    monkeypatch.setattr(spm, "MAX_FIELDS", 5000, raising=False)
    folder = folder_with(tmp_path, trained["unigram"] + message(2, (varint(3 << 3) + varint(1)) * 5000))
    assert refused(folder) == (f"{folder}/spm.model is not a SentencePiece model (more than 5,000 protobuf fields; "
                               "minibert reads no more)")
