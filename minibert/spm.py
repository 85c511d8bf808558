"""SentencePiece-only tokenizer folders (`spm.model`, `sentencepiece.bpe.model`) -> a `tokenizers` Tokenizer,
built as transformers' `convert_slow_tokenizer` builds it, so that the ids are the same.

The model file is a protobuf (`ModelProto` of sentencepiece_model.proto). Reading it takes only the few
fields the converters use, so this module decodes the protobuf wire format itself (varints and
length-delimited fields) rather than depend on `protobuf` or `sentencepiece` at run time.

The three layouts transformers converts (`DebertaV2Converter`, `XLMRobertaConverter`, `CamembertConverter`):
- deberta-v2: the pieces as they are; Strip, the model's precompiled normalizer, runs of spaces -> one;
  `[CLS] A [SEP] B [SEP]` with token types;
- xlm-roberta: fairseq's order, `<s> <pad> </s> <unk>` then the pieces from the fourth on (every id one
  above SentencePiece's), `<mask>` last; `<s> A </s> </s> B </s>`;
- camembert: `<s>NOTUSED <pad> </s>NOTUSED <unk> <unk>NOTUSED`, the pieces from the second on, `<mask>`.

A hostile file is refused at load, in one line naming it, before it can crash the tokenizers library, make
loading hang or exhaust memory: the limits below are far above what SentencePiece itself writes.
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field

import numpy as np

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, Unigram

# How many times longer a normalizer (tokenizer.json's, or a model's precompiled charsmap) may make a text.
# Real ones stay within 11 (NFKC's widest ligatures, in UTF-8 bytes); a rule mapping one character to
# thousands makes 2,000 characters into 4e8, and the tokenizers library aborts the process while allocating,
# before any Python code could step in.
MAX_EXPANSION = 16

FILES = ("spm.model", "sentencepiece.bpe.model")
# What a file name means when neither tokenizer_config.json nor config.json says which tokenizer it is.
KIND_OF_FILE = {"spm.model": "deberta-v2", "sentencepiece.bpe.model": "xlm-roberta"}
# tokenizer_class (less "Tokenizer"/"TokenizerFast") or model_type -> converter
KINDS = {"DebertaV2": "deberta-v2", "deberta-v2": "deberta-v2", "XLMRoberta": "xlm-roberta",
         "xlm-roberta": "xlm-roberta", "Camembert": "camembert", "camembert": "camembert"}
# transformers' tokenizer classes: tokens they add as AddedTokens with other than the default flags, and
# their extra special tokens.
MASK_LSTRIP = ("xlm-roberta", "camembert")  # "<mask>" takes the space before it
EXTRA_SPECIAL = {"camembert": ["<s>NOTUSED", "</s>NOTUSED", "<unk>NOTUSED"]}
CONTROL, USER_DEFINED = 3, 4  # SentencePiece piece types

# Limits on what a model file may hold, far above real models, so that no file can crash the tokenizers
# library, make loading hang or take gigabytes.
MAX_FILE_BYTES = 2**28  # real models are a few megabytes (250,000 pieces make 5 MB)
# The largest real vocabularies have under a million pieces; 10**7 took 5.5 GB. Counted as they are read.
MAX_PIECES = 2**20
# SentencePiece learns no piece over 512 characters (max_sentencepiece_length): 2,048 bytes at most. One of
# 300,000 overflows the stack of the tokenizers library's Unigram trie; BPE merges slice every prefix.
MAX_PIECE_BYTES = 2048
# The Unigram trie takes some 300 bytes a character (50 MB of long pieces: 15 GB); real vocabularies hold a
# few megabytes of text.
MAX_PIECE_TEXT = 2**24
# Finding BPE merges slices every piece at every point: the sum of the pieces' squared lengths (real models:
# about 50 a piece), giving about two merges a piece. 1,024 pieces of one repeated letter would make 500,000
# merges of 350 million characters.
MAX_MERGE_WORK = 2**27
MAX_MERGES = 4 * MAX_PIECES
MAX_CHARSMAP_BYTES = 2**23  # SentencePiece's own normalization tables are about 240 KB
# A real piece takes 3 or 4 fields; reading one costs about a microsecond, so tiny fields cannot take minutes.
MAX_FIELDS = 6 * MAX_PIECES
MODEL_FIELDS = range(1, 6)  # ModelProto: pieces, trainer_spec, normalizer_spec, self_test_data, denormalizer_spec
LENGTH_DELIMITED = 2


class SentencePieceError(ValueError):
    """A file that is not a SentencePiece model, or one no converter handles."""


@dataclass
class Piece:
    piece: str
    score: float = 0.0
    type: int = 1  # NORMAL


@dataclass
class SentencePieceModel:
    """The fields of `ModelProto` that the converters read."""

    pieces: list[Piece] = field(default_factory=list)
    model_type: int = 1  # 1 UNIGRAM, 2 BPE
    byte_fallback: bool = False
    unk_id: int = 0
    unk_piece: str = "<unk>"
    precompiled_charsmap: bytes = b""


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf):
            raise SentencePieceError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise SentencePieceError("varint longer than 10 bytes")


def _fields(buf: bytes, base: int = 0, budget: list[int] | None = None, top: bool = False):
    """(field number, value, where the value starts in the file) of each field of one protobuf message: ints
    for varints, bytes for the other wire types. `base`: where `buf` starts in the file; `budget`: how many
    more fields may be read, counted down; `top`: a ModelProto, whose fields are checked before their values
    are read."""
    i, end = 0, len(buf)
    while i < end:
        at = i
        key = buf[i]
        i += 1
        if key & 0x80:
            key, i = _varint(buf, at)
        number, wire = key >> 3, key & 7
        if number == 0:  # no protobuf field has it; zeros would otherwise read as empty fields
            raise SentencePieceError(f"a field numbered 0 at byte {base + at}")
        if top:
            if number not in MODEL_FIELDS:
                raise SentencePieceError(f"field {number} at byte {base + at}: a ModelProto has only fields 1 to 5")
            if wire != LENGTH_DELIMITED:
                raise SentencePieceError(f"field {number} at byte {base + at} has wire type {wire}, not 2 "
                                         "(length-delimited)")
        if budget is not None:
            budget[0] -= 1
            if budget[0] < 0:
                raise SentencePieceError(f"more than {MAX_FIELDS:,} protobuf fields; minibert reads no more")
        if wire == 2:  # length-delimited: strings, bytes, messages, packed repeats
            if i < end and buf[i] < 0x80:
                n, start = buf[i], i + 1
            else:
                n, start = _varint(buf, i)
            value, i = buf[start:start + n], start + n
        elif wire == 0:
            start = i
            value, i = _varint(buf, i)
        elif wire in (1, 5):  # fixed64, fixed32
            start, i = i, i + (8 if wire == 1 else 4)
            value = buf[start:i]
        else:
            raise SentencePieceError(f"unsupported protobuf wire type {wire}")
        if i > end:
            raise SentencePieceError("a field runs past the end of the file")
        yield number, value, base + start


def _int32(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value  # negative int32s are 10-byte varints


class _Refused(Exception):
    """A refusal already said in full (not "is not a SentencePiece model")."""


def read_model(path: str) -> SentencePieceModel:
    """Parse a SentencePiece model file (ModelProto: pieces = 1, trainer_spec = 2, normalizer_spec = 3)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise SentencePieceError(f"{path} is {size:,} bytes; minibert refuses SentencePiece models over "
                                     f"{MAX_FILE_BYTES:,} bytes (real ones are a few megabytes)")
        data = f.read(MAX_FILE_BYTES + 1)
    m = SentencePieceModel()
    seen: dict[str, int] = {}
    budget = [MAX_FIELDS]
    text = 0
    try:
        for number, value, at in _fields(data, budget=budget, top=True):
            if number == 1:  # SentencePiece: piece = 1, score = 2 (float), type = 3
                index = len(m.pieces)
                if index == MAX_PIECES:
                    raise _Refused(f"{path}: more than {MAX_PIECES:,} pieces, minibert's limit (the largest real "
                                   "vocabularies have under a million)")
                p = Piece("")
                for n, v, _ in _fields(value, at, budget):
                    if n == 1:
                        if len(v) > MAX_PIECE_BYTES:
                            raise _Refused(f"{path}: piece {index} is {len(v):,} bytes long; minibert refuses pieces "
                                           f"over {MAX_PIECE_BYTES:,} bytes (SentencePiece learns none over 512 "
                                           "characters)")
                        text += len(v)
                        if text > MAX_PIECE_TEXT:
                            raise _Refused(f"{path}: its pieces hold more than {MAX_PIECE_TEXT:,} bytes of text; "
                                           "minibert refuses more (real vocabularies hold a few megabytes), which "
                                           "lets a small file take gigabytes")
                        p.piece = v.decode("utf-8")
                    elif n == 2:
                        p.score = struct.unpack("<f", v)[0]
                    elif n == 3:
                        p.type = v
                if not math.isfinite(p.score):  # the tokenizers library fails every encode on one
                    raise _Refused(f"{path}: piece {index} {p.piece!r} has score {p.score}; scores must be finite")
                if p.piece in seen:  # SentencePiece refuses them; one of the two ids would never be given
                    raise _Refused(f"{path}: piece {index} {p.piece!r} is already piece {seen[p.piece]}; each "
                                   "piece must be listed once")
                seen[p.piece] = index
                m.pieces.append(p)
            elif number == 2:  # TrainerSpec: model_type = 3, byte_fallback = 35, unk_id = 40, unk_piece = 45
                for n, v, _ in _fields(value, at, budget):
                    if n == 3:
                        m.model_type = v
                    elif n == 35:
                        m.byte_fallback = bool(v)
                    elif n == 40:
                        m.unk_id = _int32(v)
                    elif n == 45:
                        m.unk_piece = v.decode("utf-8")
            elif number == 3:  # NormalizerSpec: precompiled_charsmap = 2
                for n, v, _ in _fields(value, at, budget):
                    if n == 2:
                        m.precompiled_charsmap = bytes(v)
    except _Refused as e:
        raise SentencePieceError(str(e)) from None
    except (SentencePieceError, UnicodeDecodeError, struct.error, TypeError, AttributeError) as e:
        raise SentencePieceError(f"{path} is not a SentencePiece model ({e})") from None
    if not m.pieces:
        raise SentencePieceError(f"{path} is not a SentencePiece model (it holds no pieces)")
    if m.model_type not in (1, 2):
        raise SentencePieceError(f"{path}: SentencePiece model_type {m.model_type} is not supported (Unigram 1 or BPE 2)")
    if m.precompiled_charsmap:
        if len(m.precompiled_charsmap) > MAX_CHARSMAP_BYTES:
            raise SentencePieceError(f"{path}: its precompiled_charsmap is {len(m.precompiled_charsmap):,} bytes; "
                                     f"minibert refuses more than {MAX_CHARSMAP_BYTES:,} (SentencePiece's own are "
                                     "about 240 KB)")
        try:
            factor, key, length = charsmap_expansion(m.precompiled_charsmap)
        except SentencePieceError as e:
            raise SentencePieceError(f"{path}: its precompiled_charsmap is malformed ({e})") from None
        if factor > MAX_EXPANSION:  # the bound tokenizer.json's normalizers have
            shown = key.decode("utf-8", "backslashreplace")
            raise SentencePieceError(f"{path}: its precompiled_charsmap can make a text {factor:,.0f} times longer in "
                                     f"bytes ({shown!r} becomes {length:,} bytes); minibert refuses more than "
                                     f"{MAX_EXPANSION} times, which lets a short text exhaust memory")
    return m


def charsmap_expansion(charsmap: bytes) -> tuple[float, bytes, int]:
    """How many times longer, in UTF-8 bytes, a precompiled_charsmap can make a text: (factor, the key that
    does it, the length of its replacement). SentencePieceError for a table the tokenizers library would
    abort or panic on.

    The table is a darts-clone double array (a little-endian uint32 of its size in bytes, then its uint32
    units) and the NUL-ended replacements. The tokenizers library replaces each grapheme under 6 bytes, else
    each character, by the replacement of the shortest key that begins it: keys of up to 5 bytes are all that
    can match, and the worst is the largest replacement over key length. Bytes, not characters: memory goes by
    bytes, and U+FDFA alone becomes 18 characters (33 bytes from 3) in nmt_nfkc.
    """
    if len(charsmap) < 4:
        raise SentencePieceError("shorter than its 4-byte header")
    size = int.from_bytes(charsmap[:4], "little")
    if size > len(charsmap) - 4:  # the library reserves 8 bytes a unit before reading them
        raise SentencePieceError(f"its trie is said to be {size:,} bytes but the charsmap holds "
                                 f"{len(charsmap) - 4:,} after its header")
    if size % 4:
        raise SentencePieceError(f"its trie is said to be {size:,} bytes, not a whole number of 4-byte units")
    if size == 0:
        raise SentencePieceError("its trie is empty")
    units = np.frombuffer(charsmap, "<u4", size // 4, 4).astype(np.int64)
    replacements = np.frombuffer(charsmap, np.uint8, offset=4 + size)
    try:
        charsmap[4 + size:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise SentencePieceError(f"its replacements are not UTF-8 ({e})") from None
    ends = np.append(np.flatnonzero(replacements == 0), len(replacements))
    n = len(units)
    labels = units & 0x800000FF  # a value unit has the top bit set, so matches no byte
    nodes = np.arange(n) ^ ((units >> 10) << ((units & (1 << 9)) >> 6))  # unit -> the node its children hang from
    children = np.flatnonzero((labels >= 1) & (labels <= 255))  # byte 0 ends a key
    parents = children ^ labels[children]
    frontier, levels = nodes[:1], []
    worst = (0.0, 0, 0, 0)  # factor, depth, unit, length
    for depth in range(1, 6):
        if frontier.size and (frontier | 0xFF).max() >= n:  # the 256 units a node's children may be in
            raise SentencePieceError("a node lies past the end of its trie")
        level = children[np.isin(parents, frontier)]
        levels.append(level)
        leaves = level[(units[level] >> 8) & 1 == 1]
        if leaves.size:
            if nodes[leaves].max() >= n:
                raise SentencePieceError("a rule's value lies past the end of its trie")
            starts = units[nodes[leaves]] & 0x7FFFFFFF
            if starts.max() > len(replacements):
                raise SentencePieceError(f"a rule's replacement starts at byte {starts.max():,} of "
                                         f"{len(replacements):,}")
            inside = starts[starts < len(replacements)]
            if ((replacements[inside] & 0xC0) == 0x80).any():
                raise SentencePieceError("a rule's replacement starts inside a character")
            lengths = ends[np.searchsorted(ends, starts)] - starts
            j = int(lengths.argmax())
            if lengths[j] / depth > worst[0]:
                worst = (lengths[j] / depth, depth, int(leaves[j]), int(lengths[j]))
        frontier = np.unique(nodes[level])
    factor, depth, unit, length = worst
    if not depth:  # no rule, or only deletions
        return 0.0, b"", 0
    key = []
    for level in reversed(levels[:depth - 1]):  # back to the root: some unit of the level above leads here
        key.append(int(labels[unit]))
        unit = int(level[nodes[level] == unit ^ labels[unit]][0])
    key.append(int(labels[unit]))
    return float(factor), bytes(reversed(key)), length


def _vocab(m: SentencePieceModel, kind: str) -> tuple[list[tuple[str, float]], int]:
    """(piece, score) in id order, and the unknown token's id, as each converter lays them out."""
    pieces = [(p.piece, p.score) for p in m.pieces]
    if kind == "xlm-roberta":
        return [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + pieces[3:] + [("<mask>", 0.0)], 3
    if kind == "camembert":  # the original <unk> is demoted by -100 so that the added one is used
        return [("<s>NOTUSED", 0.0), ("<pad>", 0.0), ("</s>NOTUSED", 0.0), ("<unk>", 0.0), ("<unk>NOTUSED", -100)] \
            + pieces[1:] + [("<mask>", 0.0)], 3
    return pieces, m.unk_id


def _merges(vocab: dict[str, int], vocab_scores: list[tuple[str, float]]) -> list[tuple[str, str]]:
    """transformers' `generate_merges`: every split of every piece into two known pieces, by score."""
    pieces = dict(vocab_scores)
    work = sum(len(piece) ** 2 for piece in pieces)  # each split point slices and hashes the piece
    if work > MAX_MERGE_WORK:
        raise SentencePieceError(f"finding its BPE merges would take {work:,} steps (the sum of its pieces' squared "
                                 f"lengths); minibert refuses more than {MAX_MERGE_WORK:,}, which lets a small file "
                                 "take minutes and gigabytes")
    merges = []
    for merge, score in pieces.items():
        local = [(merge[:i], merge[i:], score) for i in range(1, len(merge)) if merge[:i] in vocab and merge[i:] in vocab]
        merges.extend(sorted(local, key=lambda x: (vocab[x[0]], vocab[x[1]])))
        if len(merges) > MAX_MERGES:
            raise SentencePieceError(f"more than {MAX_MERGES:,} BPE merges; minibert refuses more (real models have "
                                     "about two a piece)")
    merges.sort(key=lambda v: (v[2], len(v[0]), len(v[1])), reverse=True)
    return [(a, b) for a, b, _ in merges]


def convert(path: str, kind: str, cfg: dict, special: dict) -> Tokenizer:
    """The `tokenizers` Tokenizer that transformers' fast tokenizer class for `kind` builds from `path`.

    cfg: tokenizer_config.json (do_lower_case, split_by_punct, added_tokens_decoder); special: the special
    tokens by name (bos_token, ..., mask_token), as the loader resolved them.
    """
    m = read_model(path)
    vocab_scores, unk_id = _vocab(m, kind)
    if m.model_type == 1:
        tok = Tokenizer(Unigram(vocab_scores, unk_id=unk_id, byte_fallback=False))
    else:
        order = {p.piece: i for i, p in enumerate(m.pieces)}
        try:
            merges = _merges(order, vocab_scores)
        except SentencePieceError as e:
            raise SentencePieceError(f"{path}: {e}") from None
        tok = Tokenizer(BPE({w: i for i, (w, _) in enumerate(vocab_scores)}, merges,
                            unk_token=m.unk_piece, fuse_unk=True, byte_fallback=False, dropout=None))
    # The model's control pieces become special added tokens, its user-defined pieces plain ones.
    tok.add_tokens([AddedToken(p.piece, normalized=False, special=p.type == CONTROL)
                    for p in m.pieces if p.type in (CONTROL, USER_DEFINED)])

    charsmap = [normalizers.Precompiled(m.precompiled_charsmap)] if m.precompiled_charsmap else []
    metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    if kind == "deberta-v2":
        lower = [normalizers.Lowercase()] if cfg.get("do_lower_case", False) else []
        tok.normalizer = normalizers.Sequence(lower + [normalizers.Strip()] + charsmap
                                              + [normalizers.Replace(Regex(" {2,}"), " ")])
        punct = [pre_tokenizers.Punctuation(behavior="isolated")] if cfg.get("split_by_punct", False) else []
        tok.pre_tokenizer = pre_tokenizers.Sequence(punct + [metaspace])
        cls, sep = special["cls_token"], special["sep_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))])
    else:
        tok.normalizer = normalizers.Sequence(charsmap + [normalizers.Strip(left=False, right=True),
                                                          normalizers.Replace(Regex(" {2,}"), "▁")])
        tok.pre_tokenizer = metaspace
        cls, sep = special["cls_token"], special["sep_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} {sep} $B {sep}",
            special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    _add_special_tokens(tok, kind, cfg, special)
    return tok


def _add_special_tokens(tok: Tokenizer, kind: str, cfg: dict, special: dict) -> None:
    """What transformers' fast tokenizer adds on top of the converted model: the added tokens that
    tokenizer_config.json lists (with their flags), then each special token not yet added, in its order
    (bos, eos, unk, sep, pad, cls, mask, the class's extra ones)."""
    added = {t.content for t in tok.get_added_tokens_decoder().values()}
    listed = []
    for index, entry in sorted(((int(k), v) for k, v in (cfg.get("added_tokens_decoder") or {}).items())):
        if isinstance(entry, dict) and entry.get("content") not in added:
            flags = {k: entry[k] for k in ("single_word", "lstrip", "rstrip", "normalized", "special") if k in entry}
            listed.append(AddedToken(entry["content"], **flags))
            added.add(entry["content"])
    names = list(dict.fromkeys(v for v in special.values() if isinstance(v, str)))  # not additional_special_tokens' list
    extra = cfg.get("additional_special_tokens") or EXTRA_SPECIAL.get(kind, [])
    for content in names + [t["content"] if isinstance(t, dict) else t for t in extra]:
        if content in added:
            continue
        added.add(content)
        if content == special.get("mask_token") and kind in MASK_LSTRIP:
            listed.append(AddedToken(content, lstrip=True, normalized=False, special=True))
        elif content == special.get("unk_token") and kind == "deberta-v2":  # DebertaV2Tokenizer's own AddedToken
            listed.append(AddedToken(content, normalized=True, special=True))
        else:
            listed.append(AddedToken(content, normalized=False, special=True))
    if listed:
        tok.add_tokens(listed)
