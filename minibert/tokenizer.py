"""`AutoTokenizer` over the `tokenizers` library, returning transformers-style `BatchEncoding`s.

The Rust tokenizer does all the string work (normalising, WordPiece, special tokens, truncation,
padding). This module only reads the Hub files and speaks transformers' calling conventions. It is
longer than the others because `PreTrainedTokenizer` is one class with transformers' whole calling
surface (call, pairs, padding, truncation, overflow, offsets, decoding, special tokens), kept together
so that one reading shows every convention; reading the folder's files is `tokenizer_files.py`.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from . import tokenizer_files as files
from .families import SPECIAL_TOKENS
# TokenizerError is raised by the folder's steps and named here too, where users import it from.
from .tokenizer_files import SPECIAL, TokenizerError, TokenizerPanic  # noqa: F401


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


class PreTrainedTokenizer:
    """A BERT-family tokenizer (WordPiece, byte-level BPE or SentencePiece Unigram, as tokenizer.json says):
    `tokenizer(texts, padding=True, truncation=True, return_tensors="tf")`."""

    def __init__(self, tokenizer: Tokenizer, model_max_length: int = 512, model_input_names=None,
                 name_or_path: str = "", clean_up_tokenization_spaces: bool = True, convention: str = "wordpiece",
                 vocab_file: str | None = None, **special_tokens):
        self._tokenizer = tokenizer
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.model_max_length = model_max_length
        self.truncation_side = "right"  # transformers' attribute: "left" keeps the end of a text
        self.model_input_names = list(model_input_names or ["input_ids", "token_type_ids", "attention_mask"])
        self.name_or_path = name_or_path
        self.vocab_file = vocab_file  # the file the vocabulary was read from, for error messages
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        for key in SPECIAL:
            setattr(self, key, special_tokens.get(key, SPECIAL_TOKENS[convention][key]))
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
        cfg = {**files.read_json(os.path.join(folder, "tokenizer_config.json")), **kwargs}
        model_cfg = files.read_json(os.path.join(folder, "config.json"))
        convention = files.convention(cfg, model_cfg, folder)
        special = files.special_tokens(cfg, files.read_json(os.path.join(folder, "special_tokens_map.json")), convention)
        backend, vocab_file = files.backend(folder, cfg, special, model_cfg, convention)
        files.prefix_space(backend, cfg, convention)
        # With nothing written: True for the WordPiece tokenizers (BertTokenizer's long-standing default,
        # which gives the seed's "i've"), False for RoBERTa/XLM-R, as transformers' classes have it.
        clean_up = cfg.get("clean_up_tokenization_spaces", convention == "wordpiece")
        return cls(backend, model_max_length=files.max_length(cfg, model_cfg, folder, kwargs),
                   model_input_names=files.input_names(cfg, model_cfg, convention), name_or_path=str(name_or_path),
                   clean_up_tokenization_spaces=clean_up, convention=convention, vocab_file=vocab_file, **special)

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
                 return_overflowing_tokens=False, pad_to_multiple_of=None, truncation_side=None) -> BatchEncoding:
        """Tokenize a text, a (text, text_pair), or lists of them, with transformers' arguments.

        `return_overflowing_tokens=True` with `truncation` and `stride` keeps what truncation cuts: every
        text gives as many rows as it needs (each overlapping the previous by `stride` tokens), all rows
        of all texts in one flat batch, and `overflow_to_sample_mapping` says which text each row is from.
        `return_offsets_mapping` gives each token's (start, end) characters in its own text ((0, 0) for
        special tokens), `return_special_tokens_mask` 1 for [CLS]/[SEP]/<s>/</s>/padding.
        `truncation_side` ("right" or "left", default the tokenizer's attribute) overrides it for this call.
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
        side = self.truncation_side if truncation_side is None else truncation_side
        if side not in ("right", "left"):
            raise ValueError(f"truncation_side={side!r}; use 'right' or 'left'")
        tok = self._configured_tokenizer(padding, truncation, limit, stride, pad_to_multiple_of, side)
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

    def _configured_tokenizer(self, padding, truncation, limit, stride, pad_to_multiple_of, side="right") -> Tokenizer:
        """A copy of the tokenizer with these settings, made once and then only read (thread-safe)."""
        if padding is True:
            padding = "longest"
        if padding not in (False, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding={padding!r}; use True, 'longest', 'max_length' or False")
        key = (padding, truncation, limit, stride, pad_to_multiple_of, side)
        with self._lock:
            tok = self._configured.get(key)
            if tok is None:
                tok = Tokenizer.from_str(self._tokenizer.to_str())
                if truncation:
                    tok.enable_truncation(limit, stride=stride, strategy=truncation, direction=side)
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
                             f"{files.first_line(e)}") from None

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
