"""`AutoTokenizer` over the `tokenizers` library, returning transformers-style `BatchEncoding`s.

The Rust tokenizer does all the string work (normalising, WordPiece, special tokens, truncation,
padding). This module only reads the Hub files and speaks transformers' calling conventions.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

VERY_LARGE = int(1e29)  # transformers writes int(1e30) when a tokenizer has no length limit
SPECIAL = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
DEFAULTS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}


class TokenizerError(OSError):
    """Tokenizer files that are missing or unreadable."""


class BatchEncoding(dict):
    """The tokenizer's output: a dict (`enc["input_ids"]`) that also allows `enc.input_ids`."""

    def __init__(self, data, encodings=None):
        super().__init__(data)
        self.encodings = encodings

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self.encodings[batch_index].tokens

    def word_ids(self, batch_index: int = 0) -> list:
        return self.encodings[batch_index].word_ids


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{path} is not valid JSON: {e}") from None


# -- the steps of from_pretrained -----------------------------------------------------------------
def _special_tokens(cfg: dict, special_map: dict) -> dict:
    """[UNK], [SEP], ...: tokenizer_config.json first, then special_tokens_map.json, then BERT's names."""
    special = {}
    for key in SPECIAL:
        value = cfg.get(key, special_map.get(key, DEFAULTS[key]))
        special[key] = value["content"] if isinstance(value, dict) else value  # {"content": "[CLS]", ...} form
    return special


def _backend(folder: str, cfg: dict, special: dict) -> Tokenizer:
    """The Rust tokenizer: tokenizer.json as written, or a WordPiece built from vocab.txt."""
    tok_json, vocab = os.path.join(folder, "tokenizer.json"), os.path.join(folder, "vocab.txt")
    try:
        if os.path.isfile(tok_json):
            return Tokenizer.from_file(tok_json)
        if os.path.isfile(vocab):
            return _wordpiece_from_vocab(vocab, cfg, special)
    except Exception as e:  # the Rust side reports a bad file as a plain Exception
        raise TokenizerError(f"cannot read the tokenizer in {folder}: {e}") from None
    present = ", ".join(sorted(os.listdir(folder))) or "nothing"
    raise TokenizerError(f"no tokenizer.json or vocab.txt in {folder} (it contains: {present})")


def _max_length(cfg: dict, model_cfg: dict) -> int:
    """model_max_length from tokenizer_config.json; with no limit written, the model's position table."""
    max_len = cfg.get("model_max_length") or VERY_LARGE
    if max_len >= VERY_LARGE:
        max_len = model_cfg.get("max_position_embeddings", VERY_LARGE)
    return int(max_len)


def _input_names(cfg: dict, model_cfg: dict) -> list[str]:
    """What the model takes: DistilBERT has no token types, so its tokenizer returns none."""
    names = cfg.get("model_input_names")
    if names is None:
        distil = (str(cfg.get("tokenizer_class", "")).startswith("DistilBert")
                  or model_cfg.get("model_type") == "distilbert")
        names = ["input_ids", "attention_mask"] if distil else ["input_ids", "token_type_ids", "attention_mask"]
    return list(names)


def _wordpiece_from_vocab(vocab_file: str, cfg: dict, special: dict) -> Tokenizer:
    """What transformers' BertTokenizerFast builds from a bare vocab.txt."""
    lower = cfg.get("do_lower_case", True)
    tok = Tokenizer(WordPiece.from_file(vocab_file, unk_token=special["unk_token"]))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=cfg.get("tokenize_chinese_chars", True),
        strip_accents=cfg.get("strip_accents"), lowercase=lower,
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = special["cls_token"], special["sep_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


class PreTrainedTokenizer:
    """A BERT/DistilBERT tokenizer: `tokenizer(texts, padding=True, truncation=True, return_tensors="tf")`."""

    def __init__(self, tokenizer: Tokenizer, model_max_length: int = 512, model_input_names=None,
                 name_or_path: str = "", clean_up_tokenization_spaces: bool = True, **special_tokens):
        self._tokenizer = tokenizer
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.model_max_length = model_max_length
        self.model_input_names = list(model_input_names or ["input_ids", "token_type_ids", "attention_mask"])
        self.name_or_path = name_or_path
        # True unless tokenizer_config.json says otherwise: the BERT tokenizers' long-standing default,
        # which gives the seed's "i've" (transformers 5 changed its default to False).
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        for key in SPECIAL:
            setattr(self, key, special_tokens.get(key, DEFAULTS[key]))
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
        special = _special_tokens(cfg, _read_json(os.path.join(folder, "special_tokens_map.json")))
        return cls(_backend(folder, cfg, special), model_max_length=_max_length(cfg, model_cfg),
                   model_input_names=_input_names(cfg, model_cfg), name_or_path=str(name_or_path),
                   clean_up_tokenization_spaces=cfg.get("clean_up_tokenization_spaces", True), **special)

    def save_pretrained(self, save_directory) -> None:
        os.makedirs(save_directory, exist_ok=True)
        self._tokenizer.save(os.path.join(save_directory, "tokenizer.json"))
        cfg = {k: getattr(self, k) for k in SPECIAL}
        cfg.update(model_max_length=self.model_max_length, model_input_names=self.model_input_names,
                   clean_up_tokenization_spaces=self.clean_up_tokenization_spaces)
        with open(os.path.join(save_directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2)

    # -- the main call -------------------------------------------------------------------------
    def __call__(self, text, text_pair=None, *, padding=False, truncation=None, max_length=None,
                 return_tensors=None, add_special_tokens=True, return_attention_mask=True,
                 return_token_type_ids=None, pad_to_multiple_of=None) -> BatchEncoding:
        single = isinstance(text, str)
        batch = self._as_batch(text, text_pair)
        tok = self._configured_tokenizer(padding, truncation, max_length, pad_to_multiple_of)
        encodings = tok.encode_batch(batch, add_special_tokens=add_special_tokens)
        want_types = "token_type_ids" in self.model_input_names if return_token_type_ids is None else return_token_type_ids
        data = {"input_ids": [e.ids for e in encodings]}
        if want_types:
            data["token_type_ids"] = [e.type_ids for e in encodings]
        if return_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in encodings]
        if return_tensors is None:
            if single:
                data = {k: v[0] for k, v in data.items()}
            return BatchEncoding(data, encodings)
        if len({len(e.ids) for e in encodings}) > 1:
            raise ValueError("sequences have different lengths; pass padding=True to return tensors")
        return BatchEncoding({k: _to_tensor(v, return_tensors) for k, v in data.items()}, encodings)

    @staticmethod
    def _as_batch(text, text_pair):
        def check(items, what):
            for i, t in enumerate(items):
                if not isinstance(t, str):
                    raise TypeError(f"{what}[{i}] is {type(t).__name__}, expected str")

        if isinstance(text, str):
            if text_pair is None:
                return [text]
            if not isinstance(text_pair, str):
                raise TypeError(f"text_pair is {type(text_pair).__name__}, expected str like text")
            return [(text, text_pair)]
        if not isinstance(text, Sequence):
            raise TypeError(f"text must be a str or a list of str, got {type(text).__name__}")
        if len(text) == 0:
            raise ValueError("no texts to tokenize: got an empty list")
        if text_pair is not None:
            if isinstance(text_pair, str) or len(text_pair) != len(text):
                raise ValueError("text_pair must be a list as long as text")
            check(text, "text")
            check(text_pair, "text_pair")
            return list(zip(text, text_pair))
        batch = []
        for i, t in enumerate(text):
            if isinstance(t, (tuple, list)) and len(t) == 2 and all(isinstance(s, str) for s in t):
                batch.append(tuple(t))  # a (text, text_pair) pair
            elif isinstance(t, str):
                batch.append(t)
            else:
                raise TypeError(f"text[{i}] is {type(t).__name__}, expected str or a (str, str) pair")
        return batch

    def _configured_tokenizer(self, padding, truncation, max_length, pad_to_multiple_of) -> Tokenizer:
        """A copy of the tokenizer with these settings, made once and then only read (thread-safe)."""
        if truncation is None:
            truncation = max_length is not None  # transformers truncates when only max_length is given
        if truncation is True:
            truncation = "longest_first"
        if padding is True:
            padding = "longest"
        if padding not in (False, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding={padding!r}; use True, 'longest', 'max_length' or False")
        if truncation not in (False, "do_not_truncate", "longest_first", "only_first", "only_second"):
            raise ValueError(f"truncation={truncation!r}; use True, False, 'only_first' or 'only_second'")
        limit = max_length if max_length is not None else self.model_max_length
        key = (padding, truncation, limit, pad_to_multiple_of)
        with self._lock:
            tok = self._configured.get(key)
            if tok is None:
                tok = Tokenizer.from_str(self._tokenizer.to_str())
                if truncation not in (False, "do_not_truncate"):
                    tok.enable_truncation(limit, strategy=truncation)
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

    # -- the smaller tools ---------------------------------------------------------------------
    def encode(self, text, text_pair=None, add_special_tokens=True, **kwargs) -> list[int]:
        return self(text, text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    def tokenize(self, text: str) -> list[str]:
        """Word pieces without special tokens, as transformers' `tokenize`."""
        return self._tokenizer.encode(text, add_special_tokens=False).tokens

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
        return [self.decode(s, skip_special_tokens, clean_up_tokenization_spaces) for s in sequences]

    @property
    def all_special_tokens(self) -> list[str]:
        return [getattr(self, k) for k in SPECIAL]

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

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
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab()

    def __repr__(self):
        return (f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length}, model_input_names={self.model_input_names})")


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
        import tensorflow as tf

        return tf.constant(rows, dtype=tf.int32)
    raise ValueError(f"return_tensors={kind!r} is not supported: use 'tf' or 'np' (minibert has no PyTorch)")


class AutoTokenizer:
    """`AutoTokenizer.from_pretrained(path_or_hub_id)`: every BERT-family checkpoint uses WordPiece."""

    @staticmethod
    def from_pretrained(name_or_path, **kwargs) -> PreTrainedTokenizer:
        return PreTrainedTokenizer.from_pretrained(name_or_path, **kwargs)
