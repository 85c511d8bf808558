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
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, Unigram

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


def _fields(buf: bytes):
    """(field number, value) of each field of one protobuf message: ints, or bytes for the other wire types."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire in (1, 5):  # fixed64, fixed32
            n = 8 if wire == 1 else 4
            value, i = buf[i:i + n], i + n
        elif wire == 2:  # length-delimited: strings, bytes, messages, packed repeats
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        else:
            raise SentencePieceError(f"unsupported protobuf wire type {wire}")
        if i > len(buf):
            raise SentencePieceError("a field runs past the end of the file")
        yield number, value


def _int32(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value  # negative int32s are 10-byte varints


def read_model(path: str) -> SentencePieceModel:
    """Parse a SentencePiece model file (ModelProto: pieces = 1, trainer_spec = 2, normalizer_spec = 3)."""
    with open(path, "rb") as f:
        data = f.read()
    m = SentencePieceModel()
    try:
        for number, value in _fields(data):
            if number == 1:  # SentencePiece: piece = 1, score = 2 (float), type = 3
                p = Piece("")
                for n, v in _fields(value):
                    if n == 1:
                        p.piece = v.decode("utf-8")
                    elif n == 2:
                        p.score = struct.unpack("<f", v)[0]
                    elif n == 3:
                        p.type = v
                m.pieces.append(p)
            elif number == 2:  # TrainerSpec: model_type = 3, byte_fallback = 35, unk_id = 40, unk_piece = 45
                for n, v in _fields(value):
                    if n == 3:
                        m.model_type = v
                    elif n == 35:
                        m.byte_fallback = bool(v)
                    elif n == 40:
                        m.unk_id = _int32(v)
                    elif n == 45:
                        m.unk_piece = v.decode("utf-8")
            elif number == 3:  # NormalizerSpec: precompiled_charsmap = 2
                for n, v in _fields(value):
                    if n == 2:
                        m.precompiled_charsmap = bytes(v)
    except (SentencePieceError, UnicodeDecodeError, struct.error, TypeError, AttributeError) as e:
        raise SentencePieceError(f"{path} is not a SentencePiece model ({e})") from None
    if not m.pieces:
        raise SentencePieceError(f"{path} is not a SentencePiece model (it holds no pieces)")
    if m.model_type not in (1, 2):
        raise SentencePieceError(f"{path}: SentencePiece model_type {m.model_type} is not supported (Unigram 1 or BPE 2)")
    return m


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
    merges = []
    for merge, score in dict(vocab_scores).items():
        local = [(merge[:i], merge[i:], score) for i in range(1, len(merge)) if merge[:i] in vocab and merge[i:] in vocab]
        merges.extend(sorted(local, key=lambda x: (vocab[x[0]], vocab[x[1]])))
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
        tok = Tokenizer(BPE({w: i for i, (w, _) in enumerate(vocab_scores)}, _merges(order, vocab_scores),
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
