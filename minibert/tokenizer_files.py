"""Reading a tokenizer folder into a `tokenizers` tokenizer and its settings: the steps of
`AutoTokenizer.from_pretrained`, with the checks that refuse files that would give wrong ids.

tokenizer.json is read as written; a folder without one gets the tokenizer transformers' converters
build from vocab.txt (WordPiece), vocab.json + merges.txt (byte-level BPE) or a SentencePiece model
(`spm.py`). The conventions a folder leaves unsaid (special tokens, token types, clean-up) come from
the family registry, as transformers' tokenizer classes supply them.
"""
from __future__ import annotations

import json
import os

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


def read_json(path: str) -> dict:
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


def _class_name(cfg: dict) -> str:
    """tokenizer_config.json's tokenizer_class less "Tokenizer"/"TokenizerFast": "Bert", "XLMRoberta", ..."""
    name = str(cfg.get("tokenizer_class") or "")
    name = name[:-4] if name.endswith("Fast") else name
    return name[:-9] if name.endswith("Tokenizer") else name


def convention(cfg: dict, model_cfg: dict, folder: str = "") -> str:
    """"wordpiece" (BERT's conventions), "roberta" or "mpnet" (<s> ... </s>), or "deberta" ([CLS] ... [SEP] as bos/eos too):
    the tokenizer class transformers would pick. An unknown or absent class gets BERT's, the commonest,
    unless the folder holds only a SentencePiece model, whose file name says whose it is: the convention only
    fills in what the folder's own files leave unsaid (the special tokens they do not name, the clean-up default)."""
    known = FAMILY_OF_CLASS.get(_class_name(cfg)) or FAMILY_OF_TYPE.get(model_cfg.get("model_type"))
    if known is None and folder and not any(os.path.isfile(os.path.join(folder, f))
                                            for f in ("tokenizer.json", "vocab.txt", "vocab.json")):
        known = next((SPM_FAMILY[f] for f in spm.FILES if os.path.isfile(os.path.join(folder, f))), None)
    return known or "wordpiece"


def special_tokens(cfg: dict, special_map: dict, convention: str) -> dict:
    """<s>, [SEP], ...: tokenizer_config.json first, then special_tokens_map.json, then the class's defaults."""
    special = {}
    for key in SPECIAL:
        value = cfg.get(key, special_map.get(key, SPECIAL_TOKENS[convention][key]))
        special[key] = value["content"] if isinstance(value, dict) else value  # {"content": "[CLS]", ...} form
    # CamemBERT's <s>NOTUSED and the like: special (skipped when decoding, listed in all_special_tokens)
    extra = cfg.get("additional_special_tokens", special_map.get("additional_special_tokens")) or []
    if not isinstance(extra, list):
        raise TokenizerError(f"additional_special_tokens must be a list of tokens, not {type(extra).__name__}")
    special["additional_special_tokens"] = [t["content"] if isinstance(t, dict) else str(t) for t in extra]
    return special


def prefix_space(tok: Tokenizer, cfg: dict, convention: str) -> None:
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
    if convention != "roberta" or post is None:  # only RobertaTokenizerFast rewrites its post-processor
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


def backend(folder: str, cfg: dict, special: dict, model_cfg: dict, convention: str = "wordpiece") -> tuple[Tokenizer, str]:
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
            return _wordpiece_from_vocab(vocab, cfg, special, convention), vocab
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
        raise TokenizerError(f"cannot read the tokenizer in {folder}: the tokenizers library failed ({first_line(e)})") from None
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


MAX_EXPANSION = spm.MAX_EXPANSION  # the bound a SentencePiece charsmap is held to, for tokenizer.json's normalizers


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


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def max_length(cfg: dict, model_cfg: dict, folder: str, kwargs: dict) -> int:
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


def input_names(cfg: dict, model_cfg: dict, convention: str = "wordpiece") -> list[str]:
    """What the model takes: DistilBERT and RoBERTa have no token types, so their tokenizers return none
    (nor does a sentencepiece.bpe.model folder, XLM-R's or CamemBERT's, whose family only the file name tells)."""
    names = cfg.get("model_input_names")
    if names is None:
        untyped = (str(cfg.get("tokenizer_class", "")).startswith(UNTYPED_CLASSES)
                   or model_cfg.get("model_type") in UNTYPED_TYPES
                   or convention == "roberta" and FAMILY_OF_CLASS.get(_class_name(cfg)) is None
                   and FAMILY_OF_TYPE.get(model_cfg.get("model_type")) is None)
        names = ["input_ids", "attention_mask"] if untyped else ["input_ids", "token_type_ids", "attention_mask"]
    return list(names)


def _wordpiece_from_vocab(vocab_file: str, cfg: dict, special: dict, convention: str = "wordpiece") -> Tokenizer:
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
    pair = f"{cls}:0 $A:0 {sep}:0 {sep}:0 $B:1 {sep}:1" if convention == "mpnet" else f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1"
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0", pair=pair,
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    if convention == "mpnet":  # its special tokens are matched whole, <mask> with the space before it
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
