"""`AutoTokenizer` over the `tokenizers` library, returning transformers-style `BatchEncoding`s.

The Rust tokenizer does all the string work (normalising, WordPiece, special tokens, truncation,
padding). This module only reads the Hub files and speaks transformers' calling conventions. It is
longer than the others because `PreTrainedTokenizer` is one class with transformers' whole calling
surface (call, pairs, padding, truncation, overflow, offsets, decoding, special tokens), kept together
so that one reading shows every convention; the steps that read the folder come first.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, WordPiece

from . import spm
from .config import CONFIG_CLASSES
from .families import REGISTRY, SPECIAL_TOKENS

VERY_LARGE = int(1e29)  # transformers writes int(1e30) when a tokenizer has no length limit
# transformers' order (SPECIAL_TOKENS_ATTRIBUTES): all_special_tokens lists them so.
SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# tokenizer class prefix / model_type -> convention: "wordpiece", "roberta" or "mpnet", the keys of SPECIAL_TOKENS (the
# defaults for folders that do not name their special tokens). transformers' AutoTokenizer picks the class from
# tokenizer_config.json's tokenizer_class first, then from config.json's model_type; so do we.
FAMILY_OF_CLASS = {name: f.tokenizer for f in REGISTRY.values() for name in f.tokenizer_classes}
FAMILY_OF_TYPE = {model_type: f.tokenizer for model_type, f in REGISTRY.items()}
# The families whose models take no token types, so that their tokenizers return none.
UNTYPED_CLASSES = tuple(name for f in REGISTRY.values() if not f.token_types for name in f.tokenizer_classes)
UNTYPED_TYPES = tuple(model_type for model_type, f in REGISTRY.items() if not f.token_types)
SPM_FAMILY = {"spm.model": "deberta", "sentencepiece.bpe.model": "roberta"}  # a bare SentencePiece folder's convention


class TokenizerError(OSError):
    """Tokenizer files that are missing, unreadable or hold values that make no sense."""


class TokenizerPanic(ValueError):
    """The Rust tokenizer gave up on an input (it panicked), said as one error naming its file."""


class BatchEncoding(dict):
    """The tokenizer's output: a dict (`enc["input_ids"]`) that also allows `enc.input_ids`.

    `enc[i]` (an int) is the i-th row's `tokenizers.Encoding`, as in transformers; `word_ids(i)`,
    `sequence_ids(i)` and `tokens(i)` read it. With `return_overflowing_tokens=True` the rows are the
    pieces of every text, in order, and `enc["overflow_to_sample_mapping"][row]` names the text.
    """

    def __init__(self, data, encodings=None):
        super().__init__(data)
        self.encodings = encodings

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        if isinstance(key, int):
            return self.encodings[key]
        return super().__getitem__(key)

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self.encodings[batch_index].tokens

    def word_ids(self, batch_index: int = 0) -> list:
        """The word each token comes from (None for special tokens and padding)."""
        return self.encodings[batch_index].word_ids

    def sequence_ids(self, batch_index: int = 0) -> list:
        """0 for tokens of the text, 1 for those of the text pair, None for special tokens and padding."""
        return self.encodings[batch_index].sequence_ids


def _read_json(path: str) -> dict:
    """A JSON object from an optional file: {} when there is none, one-line errors for anything else."""
    from .checkpoint import unreadable

    if not os.path.lexists(path):
        return {}
    problem = unreadable(path)  # a FIFO, a looping link, a directory: said as what it is, not "missing"
    if problem:
        raise TokenizerError(f"{path} {problem}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{path} is not valid JSON: {e}") from None
    except RecursionError:
        raise TokenizerError(f"{path} is nested too deeply") from None
    if not isinstance(data, dict):
        raise TokenizerError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


# -- the steps of from_pretrained -----------------------------------------------------------------
def _class_name(cfg: dict) -> str:
    """tokenizer_config.json's tokenizer_class less "Tokenizer"/"TokenizerFast": "Bert", "XLMRoberta", ..."""
    name = str(cfg.get("tokenizer_class") or "")
    name = name[:-4] if name.endswith("Fast") else name
    return name[:-9] if name.endswith("Tokenizer") else name


def _family(cfg: dict, model_cfg: dict, folder: str = "") -> str:
    """"wordpiece" (BERT's conventions), "roberta" or "mpnet" (<s> ... </s>), or "deberta" ([CLS] ... [SEP] as bos/eos too):
    the tokenizer class transformers would pick. An unknown or absent class gets BERT's, the commonest,
    unless the folder holds only a SentencePiece model, whose file name says whose it is: the convention only
    fills in what the folder's own files leave unsaid (the special tokens they do not name, the clean-up default)."""
    known = FAMILY_OF_CLASS.get(_class_name(cfg)) or FAMILY_OF_TYPE.get(model_cfg.get("model_type"))
    if known is None and folder and not any(os.path.isfile(os.path.join(folder, f))
                                            for f in ("tokenizer.json", "vocab.txt", "vocab.json")):
        known = next((SPM_FAMILY[f] for f in spm.FILES if os.path.isfile(os.path.join(folder, f))), None)
    return known or "wordpiece"


def _special_tokens(cfg: dict, special_map: dict, family: str) -> dict:
    """<s>, [SEP], ...: tokenizer_config.json first, then special_tokens_map.json, then the class's defaults."""
    special = {}
    for key in SPECIAL:
        value = cfg.get(key, special_map.get(key, SPECIAL_TOKENS[family][key]))
        special[key] = value["content"] if isinstance(value, dict) else value  # {"content": "[CLS]", ...} form
    # CamemBERT's <s>NOTUSED and the like: special (skipped when decoding, listed in all_special_tokens)
    extra = cfg.get("additional_special_tokens", special_map.get("additional_special_tokens")) or []
    if not isinstance(extra, list):
        raise TokenizerError(f"additional_special_tokens must be a list of tokens, not {type(extra).__name__}")
    special["additional_special_tokens"] = [t["content"] if isinstance(t, dict) else str(t) for t in extra]
    return special


def _prefix_space(tok: Tokenizer, cfg: dict, family: str) -> None:
    """Apply tokenizer_config.json's add_prefix_space (and RoBERTa's trim_offsets) to the Rust tokenizer,
    as transformers' fast tokenizers do when they load: the config wins over tokenizer.json, and an
    absent add_prefix_space means False (the base class's default), trim_offsets True (RoBERTa's)."""
    prefix = cfg.get("add_prefix_space", False)
    pre = tok.pre_tokenizer
    state = json.loads(pre.__getstate__()) if pre is not None else {}
    if state.get("add_prefix_space", prefix) != prefix:  # ByteLevel has the flag; Metaspace, BERT's do not
        kind = getattr(pre_tokenizers, state.pop("type"))
        tok.pre_tokenizer = kind(**{**state, "add_prefix_space": prefix})
    post = tok.post_processor
    if family != "roberta" or post is None:  # only RobertaTokenizerFast rewrites its post-processor
        return
    state = json.loads(post.__getstate__())
    wanted = {"add_prefix_space": prefix, "trim_offsets": cfg.get("trim_offsets", True)}
    changes = {k: v for k, v in wanted.items() if state.get(k, v) != v}
    if changes:
        kind = getattr(processors, state.pop("type"))
        for k in ("sep", "cls"):  # (token, id) pairs, stored as JSON lists
            if k in state:
                state[k] = tuple(state[k])
        tok.post_processor = kind(**{**state, **changes})


def _backend(folder: str, cfg: dict, special: dict, model_cfg: dict, family: str = "wordpiece") -> tuple[Tokenizer, str]:
    """The Rust tokenizer and the file it came from: tokenizer.json as written, else a WordPiece built from
    vocab.txt, else a byte-level BPE built from vocab.json + merges.txt (older RoBERTa folders), else the
    SentencePiece model converted as transformers converts it (spm.model, sentencepiece.bpe.model)."""
    from .checkpoint import is_rust_panic

    tok_json, vocab = os.path.join(folder, "tokenizer.json"), os.path.join(folder, "vocab.txt")
    bpe_vocab, merges = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    sp_model = next((os.path.join(folder, f) for f in spm.FILES if os.path.isfile(os.path.join(folder, f))), None)
    try:
        if os.path.isfile(tok_json):
            tok = Tokenizer.from_file(tok_json)
            _check_added_ids(tok, tok_json)
            _check_expansion(tok, tok_json)
            return tok, tok_json
        if os.path.isfile(vocab):
            _check_vocab_file(vocab, special["unk_token"])
            return _wordpiece_from_vocab(vocab, cfg, special, family), vocab
        if os.path.isfile(bpe_vocab) and os.path.isfile(merges):
            return _byte_level_bpe_from_files(bpe_vocab, merges, special), bpe_vocab
        if sp_model is not None:
            return spm.convert(sp_model, _spm_kind(sp_model, cfg, model_cfg), cfg, special), sp_model
    except (spm.SentencePieceError, TokenizerError) as e:
        raise TokenizerError(str(e)) from None
    except Exception as e:  # the Rust side reports a bad file as a plain Exception
        raise TokenizerError(f"cannot read the tokenizer in {folder}: {e}") from None
    except BaseException as e:
        if not is_rust_panic(e):
            raise
        raise TokenizerError(f"cannot read the tokenizer in {folder}: the tokenizers library failed ({_first_line(e)})") from None
    present = ", ".join(sorted(os.listdir(folder))) or "nothing"
    raise TokenizerError(f"no tokenizer.json or vocab.txt in {folder}, nor vocab.json + merges.txt, nor a SentencePiece "
                         f"model ({' or '.join(spm.FILES)}) (it contains: {present})")


def _spm_kind(path: str, cfg: dict, model_cfg: dict) -> str:
    """Which of transformers' converters a SentencePiece file goes through: tokenizer_class, else model_type,
    else the file's name."""
    name, model_type = _class_name(cfg), model_cfg.get("model_type")
    kind = spm.KINDS.get(name) or spm.KINDS.get(model_type)
    if kind is None and (name or model_type):
        where = f"tokenizer_class {cfg['tokenizer_class']!r}" if name else f"model_type {model_type!r}"
        raise TokenizerError(f"{path}: no SentencePiece conversion for {where} (minibert converts those of "
                             f"DeBERTa-v2, XLM-RoBERTa and CamemBERT); save the tokenizer with tokenizer.json")
    return kind or spm.KIND_OF_FILE[os.path.basename(path)]


def _check_vocab_file(vocab_file: str, unk_token: str) -> None:
    """One id per token and an id for the unknown token. transformers and the tokenizers library give a
    repeated entry different ids, and without the unknown token a word outside the vocabulary has none."""
    seen = {}
    with open(vocab_file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            token = line.rstrip()  # as the tokenizers library reads it (trailing whitespace and "\r" dropped)
            if token in seen:
                raise TokenizerError(f"{vocab_file} line {number}: {token!r} is already on line {seen[token]}; "
                                     "each token must be listed once")
            seen[token] = number
    if unk_token not in seen:
        raise TokenizerError(f"{vocab_file} has no line for the unknown token {unk_token!r}: a word outside the "
                             "vocabulary would have no id")


def _check_added_ids(tok: Tokenizer, path: str) -> None:
    """Every added token has the id tokenizer.json declares. The tokenizers library (and so transformers)
    silently gives one declared past the vocabulary the next free id, which can be another token's."""
    with open(path, encoding="utf-8") as f:
        declared = json.load(f).get("added_tokens") or []
    for entry in declared:
        content, want = entry.get("content"), entry.get("id")
        got = tok.token_to_id(content)
        if got != want:
            raise TokenizerError(
                f"{path}: added token {content!r} declares id {want} but gets id {got} (the vocabulary has "
                f"{tok.get_vocab_size(with_added_tokens=False)} entries): its row in the model would be another's")


# How many times longer a tokenizer.json's normalizer may make a text. Real ones stay within 2 (collapsing
# spaces, quotes); a Replace of one character by thousands makes 2,000 characters into 4e8 and the
# tokenizers library aborts the process while allocating, before any Python code could step in.
MAX_EXPANSION = 16


def _check_expansion(tok: Tokenizer, path: str) -> None:
    """Refuse, at load, a normalizer whose Replace rules can multiply a text's length past MAX_EXPANSION."""
    def walk(node) -> tuple[float, str]:  # (worst factor, the rule that gives most of it)
        if not isinstance(node, dict):
            return 1.0, ""
        if node.get("type") == "Sequence":
            factor, worst = 1.0, (1.0, "")
            for child in node.get("normalizers") or []:
                f, rule = walk(child)
                factor, worst = factor * f, max(worst, (f, rule))
            return factor, worst[1]
        if node.get("type") == "Replace":
            pattern, content = node.get("pattern") or {}, str(node.get("content", ""))
            literal = pattern.get("String")
            # A literal of n characters becomes len(content); a regex may match nothing, inserting content
            # between every two characters.
            factor = max(1.0, len(content) / len(literal)) if literal else len(content) + 1.0
            return factor, f"Replace {literal if literal else pattern.get('Regex')!r} by {len(content)} characters"
        return 1.0, ""

    if tok.normalizer is None:
        return
    factor, rule = walk(json.loads(tok.normalizer.__getstate__()))
    if factor > MAX_EXPANSION:
        raise TokenizerError(f"{path}: its normalizer can make a text {factor:,.0f} times longer ({rule}); "
                             f"minibert refuses more than {MAX_EXPANSION} times, which lets a short text exhaust memory")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _max_length(cfg: dict, model_cfg: dict, folder: str, kwargs: dict) -> int:
    """model_max_length from tokenizer_config.json; with no limit written, the longest sequence the model
    takes (its position table, less RoBERTa's padding offset: config.max_sequence_length)."""
    value = cfg.get("model_max_length")
    where = "the model_max_length argument" if "model_max_length" in kwargs else \
        f"model_max_length in {os.path.join(folder, 'tokenizer_config.json')}"
    if value is None or value == 0:  # 0: unset, as in transformers' older files
        value = VERY_LARGE
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1 \
            or (isinstance(value, float) and not value.is_integer()):
        raise TokenizerError(f"{where} must be a positive integer, got {value!r}")
    if value >= VERY_LARGE:
        value = model_cfg.get("max_position_embeddings", VERY_LARGE)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TokenizerError(f"max_position_embeddings in {os.path.join(folder, 'config.json')} must be a "
                                 f"positive integer, got {value!r}")
        if model_cfg.get("model_type") in CONFIG_CLASSES and value < VERY_LARGE:
            # The config class knows its family's usable length (RoBERTa: positions start at pad_token_id + 1).
            value = CONFIG_CLASSES[model_cfg["model_type"]].from_dict(model_cfg).max_sequence_length
    return int(value)


def _input_names(cfg: dict, model_cfg: dict, family: str = "wordpiece") -> list[str]:
    """What the model takes: DistilBERT and RoBERTa have no token types, so their tokenizers return none
    (nor does a sentencepiece.bpe.model folder, XLM-R's or CamemBERT's, whose family only the file name tells)."""
    names = cfg.get("model_input_names")
    if names is None:
        untyped = (str(cfg.get("tokenizer_class", "")).startswith(UNTYPED_CLASSES)
                   or model_cfg.get("model_type") in UNTYPED_TYPES
                   or family == "roberta" and FAMILY_OF_CLASS.get(_class_name(cfg)) is None
                   and FAMILY_OF_TYPE.get(model_cfg.get("model_type")) is None)
        names = ["input_ids", "attention_mask"] if untyped else ["input_ids", "token_type_ids", "attention_mask"]
    return list(names)


def _wordpiece_from_vocab(vocab_file: str, cfg: dict, special: dict, family: str = "wordpiece") -> Tokenizer:
    """What transformers' BertTokenizerFast (or MPNetTokenizerFast) builds from a bare vocab.txt."""
    lower = cfg.get("do_lower_case", True)
    tok = Tokenizer(WordPiece.from_file(vocab_file, unk_token=special["unk_token"]))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=cfg.get("tokenize_chinese_chars", True),
        strip_accents=cfg.get("strip_accents"), lowercase=lower,
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = special["cls_token"], special["sep_token"]
    # MPNet separates a pair with two </s>, as RoBERTa does (transformers' MPNetConverter)
    pair = f"{cls}:0 $A:0 {sep}:0 {sep}:0 $B:1 {sep}:1" if family == "mpnet" else f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1"
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0", pair=pair,
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    if family == "mpnet":  # its special tokens are matched whole, <mask> with the space before it
        tok.add_special_tokens(_added_specials(cfg, special, lstrip={special["mask_token"]}))
    else:
        # transformers adds the special tokens as such, so "[MASK]" in a text is one token, not "[", "mask", "]".
        tokens = [special[k] for k in SPECIAL if special[k] is not None]
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in dict.fromkeys(tokens)])
    return tok


def _added_specials(cfg: dict, special: dict, lstrip: set) -> list[AddedToken]:
    """The special tokens as transformers adds them to a tokenizer it builds from vocabulary files: with the
    flags tokenizer_config.json's added_tokens_decoder writes, else the class's (normalized, `lstrip` ones
    taking the space before them)."""
    written = {v["content"]: v for v in (cfg.get("added_tokens_decoder") or {}).values()
               if isinstance(v, dict) and isinstance(v.get("content"), str)}
    out = []
    for token in dict.fromkeys(t for t in (special[k] for k in SPECIAL) if t is not None):
        flags = written.get(token, {})
        out.append(AddedToken(token, special=True, normalized=flags.get("normalized", True),
                              lstrip=flags.get("lstrip", token in lstrip), rstrip=flags.get("rstrip", False),
                              single_word=flags.get("single_word", False)))
    return out


def _byte_level_bpe_from_files(vocab_file: str, merges_file: str, special: dict) -> Tokenizer:
    """What transformers' RobertaTokenizerFast builds from vocab.json + merges.txt (its RobertaConverter);
    add_prefix_space and trim_offsets are applied afterwards from tokenizer_config.json, as for tokenizer.json."""
    tok = Tokenizer(BPE.from_file(vocab_file, merges_file, continuing_subword_prefix="", end_of_word_suffix="",
                                  fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    cls, sep = special["cls_token"], special["sep_token"]
    tok.post_processor = processors.RobertaProcessing(sep=(sep, tok.token_to_id(sep)), cls=(cls, tok.token_to_id(cls)),
                                                      add_prefix_space=False, trim_offsets=True)
    # The special tokens are matched whole, before the BPE; <mask> takes the space before it (RoBERTa's rule).
    tokens = [special[k] for k in SPECIAL if special[k] is not None and k != "mask_token"]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in dict.fromkeys(tokens)] +
                           [AddedToken(special["mask_token"], lstrip=True, special=True, normalized=False)])
    return tok


class PreTrainedTokenizer:
    """A BERT-family tokenizer (WordPiece, byte-level BPE or SentencePiece Unigram, as tokenizer.json says):
    `tokenizer(texts, padding=True, truncation=True, return_tensors="tf")`."""

    def __init__(self, tokenizer: Tokenizer, model_max_length: int = 512, model_input_names=None,
                 name_or_path: str = "", clean_up_tokenization_spaces: bool = True, family: str = "wordpiece",
                 vocab_file: str | None = None, **special_tokens):
        self._tokenizer = tokenizer
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.model_max_length = model_max_length
        self.model_input_names = list(model_input_names or ["input_ids", "token_type_ids", "attention_mask"])
        self.name_or_path = name_or_path
        self.vocab_file = vocab_file  # the file the vocabulary was read from, for error messages
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        for key in SPECIAL:
            setattr(self, key, special_tokens.get(key, SPECIAL_TOKENS[family][key]))
        self.additional_special_tokens = list(special_tokens.get("additional_special_tokens") or [])
        self._configured: dict = {}  # (truncation, padding) settings -> a configured copy of the tokenizer
        self._lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path, *, revision=None, local_files_only=False, cache_dir=None, token=None,
                        **kwargs) -> "PreTrainedTokenizer":
        """From `tokenizer.json`, or from `vocab.txt` + `tokenizer_config.json` when there is no tokenizer.json.

        Keyword arguments override `tokenizer_config.json` entries (`model_max_length=128`, ...).
        """
        from .checkpoint import resolve

        folder = resolve(name_or_path, revision=revision, local_files_only=local_files_only,
                         cache_dir=cache_dir, token=token)
        cfg = {**_read_json(os.path.join(folder, "tokenizer_config.json")), **kwargs}
        model_cfg = _read_json(os.path.join(folder, "config.json"))
        family = _family(cfg, model_cfg, folder)
        special = _special_tokens(cfg, _read_json(os.path.join(folder, "special_tokens_map.json")), family)
        backend, vocab_file = _backend(folder, cfg, special, model_cfg, family)
        _prefix_space(backend, cfg, family)
        # With nothing written: True for the WordPiece tokenizers (BertTokenizer's long-standing default,
        # which gives the seed's "i've"), False for RoBERTa/XLM-R, as transformers' classes have it.
        clean_up = cfg.get("clean_up_tokenization_spaces", family == "wordpiece")
        return cls(backend, model_max_length=_max_length(cfg, model_cfg, folder, kwargs),
                   model_input_names=_input_names(cfg, model_cfg, family), name_or_path=str(name_or_path),
                   clean_up_tokenization_spaces=clean_up, family=family, vocab_file=vocab_file, **special)

    def save_pretrained(self, save_directory) -> None:
        os.makedirs(save_directory, exist_ok=True)
        self._tokenizer.save(os.path.join(save_directory, "tokenizer.json"))
        cfg = {k: getattr(self, k) for k in SPECIAL if getattr(self, k) is not None}
        if self.additional_special_tokens:
            cfg["additional_special_tokens"] = self.additional_special_tokens
        cfg.update(model_max_length=self.model_max_length, model_input_names=self.model_input_names,
                   clean_up_tokenization_spaces=self.clean_up_tokenization_spaces)
        with open(os.path.join(save_directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2)

    # -- the main call -------------------------------------------------------------------------
    def __call__(self, text, text_pair=None, *, padding=False, truncation=None, max_length=None, stride=0,
                 return_tensors=None, add_special_tokens=True, return_attention_mask=True,
                 return_token_type_ids=None, return_special_tokens_mask=False, return_offsets_mapping=False,
                 return_overflowing_tokens=False, pad_to_multiple_of=None) -> BatchEncoding:
        """Tokenize a text, a (text, text_pair), or lists of them, with transformers' arguments.

        `return_overflowing_tokens=True` with `truncation` and `stride` keeps what truncation cuts: every
        text gives as many rows as it needs (each overlapping the previous by `stride` tokens), all rows
        of all texts in one flat batch, and `overflow_to_sample_mapping` says which text each row is from.
        `return_offsets_mapping` gives each token's (start, end) characters in its own text ((0, 0) for
        special tokens), `return_special_tokens_mask` 1 for [CLS]/[SEP]/<s>/</s>/padding.
        """
        single = isinstance(text, str)
        batch = self._as_batch(text, text_pair)
        _check_count("max_length", max_length, minimum=1)
        stride = stride or 0
        _check_count("stride", stride, minimum=0)
        _check_count("pad_to_multiple_of", pad_to_multiple_of, minimum=1)
        truncation, limit = self._truncation(truncation, max_length)
        if truncation:
            self._check_window(batch, truncation, limit, stride, add_special_tokens)
        tok = self._configured_tokenizer(padding, truncation, limit, stride, pad_to_multiple_of)
        try:
            encodings = self._encode_batch(tok, batch, add_special_tokens)
        except TokenizerPanic:
            raise
        except Exception as e:  # the Rust side's truncation errors ("Sequence to truncate too short ...")
            raise ValueError(f"cannot tokenize with truncation={truncation!r}, max_length={limit}: {e}") from None
        rows = None
        if return_overflowing_tokens:
            flat = [(i, part) for i, e in enumerate(encodings) for part in (e, *e.overflowing)]
            rows, encodings = [i for i, _ in flat], [part for _, part in flat]
        want_types = "token_type_ids" in self.model_input_names if return_token_type_ids is None else return_token_type_ids
        data = {"input_ids": [e.ids for e in encodings]}
        if want_types:
            data["token_type_ids"] = [e.type_ids for e in encodings]
        if return_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in encodings]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in encodings]
        if rows is not None:
            data["overflow_to_sample_mapping"] = rows
        if return_tensors is None:
            if single and rows is None:  # one text, no overflow: no batch axis, as in transformers
                data = {k: v[0] for k, v in data.items()}
            return BatchEncoding(data, encodings)
        if len({len(e.ids) for e in encodings}) > 1:
            raise ValueError("sequences have different lengths; pass padding=True to return tensors")
        return BatchEncoding({k: _to_tensor(v, return_tensors) for k, v in data.items()}, encodings)

    @staticmethod
    def _as_batch(text, text_pair):
        if isinstance(text, str):
            check_text(text, "text")
            if text_pair is None:
                return [text]
            if not isinstance(text_pair, str):
                raise TypeError(f"text_pair is {type(text_pair).__name__}, expected str like text")
            check_text(text_pair, "text_pair")
            return [(text, text_pair)]
        if isinstance(text, (bytes, bytearray)) or not isinstance(text, Sequence):
            check_text(text, "text")  # names bytes and other types
        if len(text) == 0:
            raise ValueError("no texts to tokenize: got an empty list")
        if text_pair is not None:
            if isinstance(text_pair, str) or len(text_pair) != len(text):
                raise ValueError("text_pair must be a list as long as text")
            for i, (a, b) in enumerate(zip(text, text_pair)):
                check_text(a, f"text[{i}]")
                check_text(b, f"text_pair[{i}]")
            return list(zip(text, text_pair))
        batch = []
        for i, t in enumerate(text):
            if isinstance(t, (tuple, list)) and len(t) == 2 and all(isinstance(s, str) for s in t):
                check_text(t[0], f"text[{i}][0]")
                check_text(t[1], f"text[{i}][1]")
                batch.append(tuple(t))  # a (text, text_pair) pair
            elif isinstance(t, str):
                check_text(t, f"text[{i}]")
                batch.append(t)
            else:
                check_text(t, f"text[{i}]", "str or a (str, str) pair")
        return batch

    def _truncation(self, truncation, max_length) -> tuple:
        """(the truncation strategy or False, the length limit), with transformers' defaults."""
        if truncation is None:
            truncation = max_length is not None  # transformers truncates when only max_length is given
        if truncation is True:
            truncation = "longest_first"
        if truncation == "do_not_truncate":
            truncation = False
        if truncation not in (False, "longest_first", "only_first", "only_second"):
            raise ValueError(f"truncation={truncation!r}; use True, False, 'only_first' or 'only_second'")
        return truncation, max_length if max_length is not None else self.model_max_length

    def _configured_tokenizer(self, padding, truncation, limit, stride, pad_to_multiple_of) -> Tokenizer:
        """A copy of the tokenizer with these settings, made once and then only read (thread-safe)."""
        if padding is True:
            padding = "longest"
        if padding not in (False, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding={padding!r}; use True, 'longest', 'max_length' or False")
        key = (padding, truncation, limit, stride, pad_to_multiple_of)
        with self._lock:
            tok = self._configured.get(key)
            if tok is None:
                tok = Tokenizer.from_str(self._tokenizer.to_str())
                if truncation:
                    tok.enable_truncation(limit, stride=stride, strategy=truncation)
                else:
                    tok.no_truncation()
                if padding in ("longest", "max_length"):
                    tok.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token,
                                       length=limit if padding == "max_length" else None,
                                       pad_to_multiple_of=pad_to_multiple_of)
                else:
                    tok.no_padding()
                self._configured[key] = tok
        return tok

    def _check_window(self, batch, truncation, limit, stride, add_special_tokens):
        """Refuse the settings the Rust tokenizer cannot truncate with, naming the input.

        It panics (a crash, not an exception) when a truncated sequence keeps no more tokens than
        `stride`, and wraps around when `max_length` is below the special tokens' count.
        """
        pairs = [i for i, item in enumerate(batch) if isinstance(item, tuple)]
        specials = {p: self.num_special_tokens_to_add(pair=p) if add_special_tokens else 0 for p in (False, True)}
        most = specials[bool(pairs)]
        if limit < most:
            raise ValueError(f"max_length={limit} leaves no room: the special tokens alone take {most}")
        if not stride:
            return
        if len(pairs) < len(batch) and stride >= limit - specials[False]:
            raise ValueError(f"stride={stride} must be less than max_length={limit} minus the {specials[False]} special "
                             f"tokens ({limit - specials[False]}): each window moves on by the tokens it does not share")
        if not pairs:
            return
        budget = limit - specials[True]
        firsts = self._encode_batch(self._tokenizer, [batch[i][0] for i in pairs], False)
        seconds = self._encode_batch(self._tokenizer, [batch[i][1] for i in pairs], False)
        for i, a, b in zip(pairs, firsts, seconds):
            n1, n2 = len(a.ids), len(b.ids)
            kept = _kept_lengths(n1, n2, budget, truncation)
            for name, n, k in (("text", n1, kept[0]), ("text_pair", n2, kept[1])):
                if 0 < k < n and stride >= k:
                    raise ValueError(
                        f"pair {i}: truncation={truncation!r} keeps {k} of the {n} tokens of its {name} within "
                        f"max_length={limit}, not more than stride={stride}; use a smaller stride, a larger "
                        f"max_length or a shorter {'text_pair' if name == 'text' else 'text'}")

    def _encode_batch(self, tok: Tokenizer, batch: list, add_special_tokens: bool) -> list:
        """`tok.encode_batch`, with a panic of the Rust library (a pattern in tokenizer.json that backtracks
        past Oniguruma's limit, say) as one ValueError naming the file instead of a BaseException."""
        from .checkpoint import is_rust_panic

        try:
            return tok.encode_batch(batch, add_special_tokens=add_special_tokens)
        except BaseException as e:
            if not is_rust_panic(e):
                raise
            raise TokenizerPanic(f"the tokenizer from {self.vocab_file or self.name_or_path} failed on this input: "
                             f"{_first_line(e)}") from None

    # -- the smaller tools ---------------------------------------------------------------------
    def encode(self, text, text_pair=None, add_special_tokens=True, **kwargs) -> list[int]:
        return self(text, text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    def tokenize(self, text: str) -> list[str]:
        """Word pieces without special tokens, as transformers' `tokenize`."""
        return self._encode_batch(self._tokenizer, [text], False)[0].tokens

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Word pieces back to text by the tokenizer's own decoder ("hel", "##lo" -> "hello"), as transformers."""
        decoder = self._tokenizer.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """[CLS] and [SEP] for one text (2), [CLS] A [SEP] B [SEP] for a pair (3)."""
        post = self._tokenizer.post_processor
        return post.num_special_tokens_to_add(pair) if post is not None else 0

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            i = self._tokenizer.token_to_id(tokens)
            return self._tokenizer.token_to_id(self.unk_token) if i is None else i
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        if isinstance(ids, (int, np.integer)):
            return self._tokenizer.id_to_token(int(ids))
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(int(i)) for i in _flat_ids(ids) if int(i) not in special]

    def decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=None) -> str:
        text = self._tokenizer.decode(_flat_ids(token_ids), skip_special_tokens=skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean else text

    def batch_decode(self, sequences, skip_special_tokens=False, clean_up_tokenization_spaces=None) -> list[str]:
        texts = self._tokenizer.decode_batch([_flat_ids(s) for s in sequences], skip_special_tokens=skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        return [clean_up_tokenization(t) for t in texts] if clean else texts

    @property
    def all_special_tokens(self) -> list[str]:
        """bos, eos, unk, sep, pad, cls, mask, then the additional ones, each once, the unset ones left out
        (transformers' order)."""
        named = (getattr(self, k) for k in SPECIAL)
        return list(dict.fromkeys(t for t in (*named, *self.additional_special_tokens) if t is not None))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    @property
    def bos_token_id(self) -> int | None:
        return None if self.bos_token is None else self.convert_tokens_to_ids(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return None if self.eos_token is None else self.convert_tokens_to_ids(self.eos_token)

    @property
    def unk_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.unk_token)

    @property
    def sep_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.sep_token)

    @property
    def pad_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.pad_token)

    @property
    def cls_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.cls_token)

    @property
    def mask_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.mask_token)

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The `tokenizers.Tokenizer` underneath, as transformers names it (read it, do not reconfigure it)."""
        return self._tokenizer

    @property
    def is_fast(self) -> bool:  # transformers' flag: offsets, word ids and overflow come from `tokenizers`
        return True

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab()

    def __repr__(self):
        return (f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length}, model_input_names={self.model_input_names})")


def check_text(text, where: str, expected: str = "str") -> None:
    """A clear error for what the Rust tokenizer would reject with a bare TypeError; `where` names the input."""
    if isinstance(text, (bytes, bytearray)):
        raise TypeError(f"{where} is {type(text).__name__}, expected {expected}: decode it first "
                        "(e.g. data.decode('utf-8'))")
    if not isinstance(text, str):
        raise TypeError(f"{where} is {type(text).__name__}, expected {expected}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate: what a mis-decoded file or a JSON "\ud800" escape gives
        raise ValueError(f"{where} is not valid Unicode: a lone surrogate {text[e.start]!r} at character {e.start}; "
                         "repair the text (e.g. text.encode('utf-8', 'replace').decode('utf-8'))") from None


def _check_count(name: str, value, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}={value}; it must be at least {minimum}")


def _kept_lengths(n1: int, n2: int, budget: int, strategy: str) -> tuple[int, int]:
    """How many tokens of each side of a pair the Rust tokenizer keeps (its truncate_encodings)."""
    if n1 + n2 <= budget:
        return n1, n2
    if strategy == "only_first":
        return max(n1 - (n1 + n2 - budget), 0), n2
    if strategy == "only_second":
        return n1, max(n2 - (n1 + n2 - budget), 0)
    short, long_ = sorted((n1, n2))  # longest_first
    long_ = short if short > budget else max(short, budget - short)
    if short + long_ > budget:
        short, long_ = budget // 2, budget // 2 + budget % 2
    return (short, long_) if n1 <= n2 else (long_, short)


def clean_up_tokenization(text: str) -> str:
    """transformers' clean-up of spaces before punctuation and English contractions ("i ' ve" -> "i've").

    The `tokenizers` WordPiece decoder cleans token by token, so it never sees " ' " across tokens.
    """
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


def _flat_ids(ids) -> list[int]:
    a = np.asarray(ids.numpy() if hasattr(ids, "numpy") else ids)
    if a.ndim > 1:
        if a.shape[0] != 1:
            raise ValueError(f"decode takes one sequence, got shape {a.shape}; use batch_decode")
        a = a[0]
    return [int(i) for i in a]


def _to_tensor(rows, kind):
    if kind == "np":
        return np.asarray(rows, dtype=np.int64)
    if kind == "tf":
        from ._tensorflow import load_tensorflow_quietly

        tf = load_tensorflow_quietly()
        return tf.constant(rows, dtype=tf.int32)
    raise ValueError(f"return_tensors={kind!r} is not supported: use 'tf' or 'np' (minibert has no PyTorch)")


class AutoTokenizer:
    """`AutoTokenizer.from_pretrained(path_or_hub_id)`: one class reads every BERT-family tokenizer.json."""

    @staticmethod
    def from_pretrained(name_or_path, **kwargs) -> PreTrainedTokenizer:
        return PreTrainedTokenizer.from_pretrained(name_or_path, **kwargs)
