"""sentence-transformers folders: how a folder says its vectors are made, read and computed without
PyTorch, below the pipelines (the feature-extraction and rerank pipelines read a folder's modules here).

A sentence-transformers folder says how its vectors are made in files beside config.json:
`modules.json` (the module chain: Transformer, Pooling, then optional Dense and Normalize),
`1_Pooling/config.json`, `2_Dense/config.json` + `model.safetensors`, `sentence_bert_config.json`
(max_seq_length, do_lower_case) and `config_sentence_transformers.json` (prompts, the default prompt,
the similarity function, a cross-encoder's activation). Two layouts exist and both are read:
sentence-transformers 2.x-4.x (and the Hub's folders) name modules `sentence_transformers.models.Pooling`
and pooling `pooling_mode_cls_token: true`; 5.x-6.x name them by their module path
(`sentence_transformers.sentence_transformer.modules.pooling.Pooling`, 6.x moved Normalize to
`sentence_transformers.base.modules.normalize.Normalize`) and write `pooling_mode: "cls"`; 6.x's Dense may add
a residual connection (`use_residual`). The maths follows sentence-transformers' `Pooling._forward_padded`,
`Dense.forward` and `Normalize`; a module this file does not know is an error, never skipped.

Reading a folder touches only JSON and safetensors, so every check (an unknown module or pooling mode, a
Dense that does not fit, a missing weight) fails before TensorFlow or the model is loaded.

It is longer than most modules because it holds one format whole, read top to bottom: the module types
(Pooling, Dense, Normalize), reading the folder in its three layouts, then the two classes users call;
the batching and the model are the pipelines' (feature extraction and rerank), not repeated here.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .families import family


POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# The 2.x-4.x boolean keys, in the order sentence-transformers concatenates the modes they turn on.
LEGACY_POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                       "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                       "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
MODULE_KINDS = ("Transformer", "Pooling", "Dense", "Normalize", "Dropout")  # Dropout is the identity at inference
TRANSFORMER_CONFIGS = ("sentence_bert_config.json", "sentence_roberta_config.json", "sentence_distilbert_config.json",
                       "sentence_camembert_config.json", "sentence_albert_config.json",
                       "sentence_xlm-roberta_config.json", "sentence_xlnet_config.json")
SIMILARITY_FNS = ("cosine", "dot", "euclidean", "manhattan")
PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
VERY_LARGE = int(1e30)  # transformers' "no limit written" model_max_length
# The chains sentence-transformers writes have 2 to 5 modules; a modules.json of 10**5 entries took 39 s to refuse.
MAX_MODULES = 64


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float32])(x)


# torch activation class names (as the folders write them: torch.nn.modules.activation.Tanh) -> numpy.
ACTIVATIONS = {
    "Identity": lambda x: x,
    "Tanh": np.tanh,
    "Sigmoid": lambda x: (1.0 / (1.0 + np.exp(-x))).astype(np.float32),
    "ReLU": lambda x: np.maximum(x, 0),
    "GELU": lambda x: (0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))).astype(np.float32),  # torch's default: exact erf
    "SiLU": lambda x: (x / (1.0 + np.exp(-x))).astype(np.float32),
}
ACTIVATION_ALIASES = {"identity": "Identity", "none": "Identity", "tanh": "Tanh", "sigmoid": "Sigmoid",
                      "relu": "ReLU", "gelu": "GELU", "silu": "SiLU"}


class SentenceFolderError(ValueError):
    """A sentence-transformers folder minibert cannot read as it is: one line naming the file and field."""


def activation_name(value, where: str) -> str:
    """An activation as a key of ACTIVATIONS: from a folder's dotted torch path, a torch module, or a name."""
    if value is None:
        return "Identity"
    if not isinstance(value, str):  # a torch.nn module (torch.nn.Sigmoid()) or its class
        cls = value if isinstance(value, type) else type(value)
        if cls.__module__.startswith("torch.") and cls.__name__ in ACTIVATIONS:
            return cls.__name__
        raise SentenceFolderError(f"{where}: activation {value!r} is not one minibert computes; use one of "
                                  f"{', '.join(ACTIVATIONS)} (a name or the torch.nn module)")
    name = value.rsplit(".", 1)[-1]
    name = ACTIVATION_ALIASES.get(name.lower(), name)
    if name not in ACTIVATIONS:
        raise SentenceFolderError(f"{where}: activation {value!r} is not one minibert computes; it knows "
                                  f"{', '.join(ACTIVATIONS)}")
    return name


def _flag(cfg: dict, key: str, default: bool, where: str) -> bool:
    """A true/false setting: "false" or 0 read as truthiness would silently mean the opposite."""
    value = cfg.get(key, default)
    if not isinstance(value, bool):
        raise SentenceFolderError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _settings(cfg: dict, key: str, where: str) -> dict:
    """A nested object setting (processor_kwargs, sentence_transformers, ...); {} when absent or null."""
    value = cfg.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SentenceFolderError(f"{where}: {key} must be a JSON object, got {value!r}")
    return value


def read_json(path: str, required: bool = False, expect: type = dict):
    """A folder's JSON file ({} when an optional one is absent), or one line naming the file and what is wrong."""
    if not os.path.isfile(path):
        if required:
            raise SentenceFolderError(f"{path} is missing")
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise SentenceFolderError(f"{path} is not readable JSON: {e}") from None
    except RecursionError:
        raise SentenceFolderError(f"{path} is nested too deeply") from None
    if not isinstance(value, expect):
        raise SentenceFolderError(f"{path} holds a {type(value).__name__}, not a JSON {expect.__name__}")
    return value


# -- the modules after the Transformer -------------------------------------------------------------
@dataclass(frozen=True)
class Pooling:
    """Token vectors -> one vector: sentence-transformers' `Pooling`, several modes concatenated in order."""

    modes: tuple[str, ...]
    include_prompt: bool = True  # False: the prompt's tokens (and [CLS]) are left out, as for INSTRUCTOR models

    def __call__(self, hidden: np.ndarray, prompt_length: int = 0) -> np.ndarray:
        """hidden: (T, C), the real tokens of one text (right padding: positions 0..T-1) -> (modes * C,)."""
        T, C = hidden.shape
        mask = np.ones(T, np.float32)
        if not self.include_prompt and prompt_length:
            mask[:prompt_length] = 0  # as `_exclude_prompt_from_mask`: [CLS] and the prompt's tokens
        real = np.flatnonzero(mask)
        out = []
        for mode in self.modes:
            if mode == "cls":  # the first unmasked token (argmax of the mask: 0 when none is)
                out.append(hidden[real[0] if real.size else 0])
            elif mode == "max":
                out.append(np.where(mask[:, None] > 0, hidden, -np.inf).max(axis=0).astype(np.float32))
            elif mode in ("mean", "mean_sqrt_len_tokens"):
                total = (hidden * mask[:, None]).sum(axis=0)  # (C,)
                count = max(float(mask.sum()), 1e-9)
                out.append(total / np.float32(count if mode == "mean" else np.sqrt(count)))
            elif mode == "weightedmean":  # weights 1..T by position, the prompt's keep their places
                weights = np.arange(1, T + 1, dtype=np.float32) * mask
                out.append((hidden * weights[:, None]).sum(axis=0) / np.float32(max(float(weights.sum()), 1e-9)))
            else:  # lasttoken: the last unmasked token, zeros when none is
                out.append(hidden[real[-1]] if real.size else np.zeros(C, np.float32))
        return np.concatenate(out).astype(np.float32)


@dataclass(frozen=True)
class Dense:
    """sentence-transformers' `Dense`: activation(x W^T + b), plus 6.x's optional residual (x, or x R^T)."""

    weight: np.ndarray  # (out, in), as stored (torch's Linear layout)
    bias: np.ndarray | None
    activation: str = "Tanh"
    residual: bool = False
    residual_weight: np.ndarray | None = None  # (out, in) when in != out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = ACTIVATIONS[self.activation](x @ self.weight.T + (0 if self.bias is None else self.bias))  # (in,) -> (out,)
        if self.residual:
            y = y + (x if self.residual_weight is None else x @ self.residual_weight.T)
        return y.astype(np.float32)


class Normalize:
    def __call__(self, x: np.ndarray) -> np.ndarray:
        return l2_normalize(x)

    def __repr__(self):
        return "Normalize()"


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """torch.nn.functional.normalize: x / max(||x||, 1e-12), over the last axis."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


# -- the folder ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SentenceFolder:
    """What a sentence-transformers folder states: its modules and its settings."""

    folder: str
    model_folder: str  # where the Transformer's config.json, weights and tokenizer are ("" path: the folder)
    hidden_size: int
    pooling: Pooling | None  # None for a cross-encoder (no Pooling module)
    steps: tuple = ()  # Dense and Normalize modules after the pooling, in order
    max_seq_length: int | None = None
    do_lower_case: bool = False
    prompts: dict = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity_fn_name: str | None = None
    truncate_dim: int | None = None
    model_type: str = "SentenceTransformer"
    activation_fn: str | None = None  # a cross-encoder's, from its files (None: by its number of labels)

    @property
    def dimension(self) -> int:
        """The length of the vectors the chain gives (before any truncate_dim)."""
        dim = len(self.pooling.modes) * self.hidden_size if self.pooling else self.hidden_size
        for step in self.steps:
            if isinstance(step, Dense):
                dim = step.weight.shape[0]
        return dim

    def embed(self, hidden: np.ndarray, prompt_length: int = 0, normalize_module: bool = True) -> np.ndarray:
        """One text's token vectors (T, C) -> its sentence embedding, through Pooling and the modules after it
        (without the Normalize module when `normalize_module` is False)."""
        vec = self.pooling(hidden, prompt_length)
        for step in self.steps:
            if normalize_module or isinstance(step, Dense):
                vec = step(vec)
        return vec

    def describe(self) -> str:
        parts = [f"{'+'.join(self.pooling.modes)} pooling"] if self.pooling else []
        for step in self.steps:
            parts.append(f"Dense {step.weight.shape[1]}->{step.weight.shape[0]} {step.activation}"
                         if isinstance(step, Dense) else "Normalize")
        return ", ".join(parts)


def is_sentence_folder(folder) -> bool:
    return isinstance(folder, (str, os.PathLike)) and os.path.isfile(os.path.join(os.fspath(folder), "modules.json"))


def read_folder(folder) -> SentenceFolder:
    """A checkpoint folder's sentence-transformers settings. A folder without modules.json (a plain
    transformers checkpoint, as older cross-encoders ship) gives just its Transformer: no pooling."""
    folder = os.fspath(folder)
    st_config = read_json(os.path.join(folder, "config_sentence_transformers.json"))
    modules_path = os.path.join(folder, "modules.json")
    entries = read_json(modules_path, required=True, expect=list) if os.path.isfile(modules_path) else \
        [{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"}]
    if len(entries) > MAX_MODULES:
        raise SentenceFolderError(f"{modules_path} lists {len(entries):,} modules; minibert reads at most "
                                  f"{MAX_MODULES} (sentence-transformers' chains have 2 to 5)")
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("type"), str) for e in entries):
        raise SentenceFolderError(f"{modules_path}: expected a list of {{\"idx\", \"path\", \"type\"}} objects")
    for i, e in enumerate(entries):
        if "idx" in e and (isinstance(e["idx"], bool) or not isinstance(e["idx"], int)):
            raise SentenceFolderError(f"{modules_path}: module {i}'s idx must be an integer, got {e['idx']!r}")
        if not isinstance(e.get("path") or "", str):
            raise SentenceFolderError(f"{modules_path}: module {i}'s path must be a folder name (a string), "
                                      f"got {e['path']!r}")
    entries = sorted(entries, key=lambda e: e.get("idx", 0))
    kinds = [_module_kind(e, i, modules_path) for i, e in enumerate(entries)]
    if not kinds or kinds[0] != "Transformer" or "Transformer" in kinds[1:]:
        raise SentenceFolderError(f"{modules_path}: the chain must start with one Transformer module, got "
                                  f"{', '.join(e['type'] for e in entries)}")
    model_folder = os.path.join(folder, entries[0].get("path") or "")
    model_config = read_json(os.path.join(model_folder, "config.json"), required=True)
    hidden = model_config.get("hidden_size", model_config.get("dim"))
    if isinstance(hidden, bool) or not isinstance(hidden, int):
        raise SentenceFolderError(f"{os.path.join(model_folder, 'config.json')} has no integer hidden_size")
    tf_config, tf_where = {}, os.path.join(model_folder, TRANSFORMER_CONFIGS[0])
    for name in TRANSFORMER_CONFIGS:
        tf_config = read_json(os.path.join(model_folder, name))
        if tf_config:
            tf_where = os.path.join(model_folder, name)
            break
    pooling, steps, dim = None, [], hidden
    for entry, kind in zip(entries[1:], kinds[1:]):
        path = os.path.join(folder, entry.get("path") or "")
        if kind == "Pooling":
            if pooling is not None or steps:
                raise SentenceFolderError(f"{modules_path}: a Pooling module after the first pooling or a Dense")
            pooling = _read_pooling(os.path.join(path, "config.json"), hidden)
            dim = len(pooling.modes) * hidden
        elif pooling is None and kind != "Dropout":
            raise SentenceFolderError(f"{modules_path}: the {kind} module {entry.get('path')!r} comes before any "
                                      "Pooling module; minibert pools the token vectors first")
        elif kind == "Dense":
            steps.append(_read_dense(path, dim))
            dim = steps[-1].weight.shape[0]
        elif kind == "Normalize":
            steps.append(Normalize())
    model_type = st_config.get("model_type") or ("CrossEncoder" if pooling is None else "SentenceTransformer")
    prompts = st_config.get("prompts") or {}
    where = os.path.join(folder, "config_sentence_transformers.json")
    if not isinstance(prompts, dict) or not all(isinstance(k, str) and isinstance(v, (str, type(None)))
                                                for k, v in prompts.items()):
        raise SentenceFolderError(f"{where}: prompts must map names to strings, got {prompts!r}")
    # sentence-transformers' SentenceTransformer starts from empty "query" and "document" prompts
    prompts = {**({"query": "", "document": ""} if model_type == "SentenceTransformer" else {}),
               **{k: v or "" for k, v in prompts.items()}}
    default_prompt = st_config.get("default_prompt_name")
    if default_prompt is not None and not isinstance(default_prompt, str):
        raise SentenceFolderError(f"{where}: default_prompt_name must be a prompt's name (a string), got "
                                  f"{default_prompt!r}")
    if default_prompt is not None and default_prompt not in prompts:
        raise SentenceFolderError(f"{where}: default_prompt_name {default_prompt!r} is not one of the prompts "
                                  f"{sorted(prompts)}")
    similarity = st_config.get("similarity_fn_name")
    if similarity is not None and similarity not in SIMILARITY_FNS:
        raise SentenceFolderError(f"{where}: similarity_fn_name {similarity!r}; sentence-transformers knows "
                                  f"{', '.join(SIMILARITY_FNS)}")
    truncate_dim = st_config.get("truncate_dim")
    if truncate_dim is not None and (isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int)
                                     or truncate_dim < 1):
        raise SentenceFolderError(f"{where}: truncate_dim must be a positive integer, got {truncate_dim!r}")
    activation, key = st_config.get("activation_fn"), "activation_fn"
    if activation is None:  # cross-encoders saved by transformers' side: config.json states it (v4+, then older)
        where = os.path.join(model_folder, "config.json")
        activation, key = _settings(model_config, "sentence_transformers", where).get("activation_fn"), \
            "sentence_transformers.activation_fn"
        if activation is None:
            activation, key = model_config.get("sbert_ce_default_activation_function"), \
                "sbert_ce_default_activation_function"
    if activation is not None:
        if not isinstance(activation, str):
            raise SentenceFolderError(f"{where}: {key} must be a torch activation's dotted name (such as "
                                      f"'torch.nn.modules.activation.Sigmoid'), got {activation!r}")
        if not activation.startswith("torch."):  # sentence-transformers trusts only torch's classes without remote code
            activation = None
        else:
            activation = activation_name(activation, f"{where} {key}")
    return SentenceFolder(
        folder=folder, model_folder=model_folder, hidden_size=hidden, pooling=pooling, steps=tuple(steps),
        max_seq_length=_max_seq_length(model_folder, tf_config, tf_where, model_config),
        do_lower_case=_flag(tf_config, "do_lower_case", False, tf_where), prompts=prompts,
        default_prompt_name=default_prompt, similarity_fn_name=similarity, truncate_dim=truncate_dim,
        model_type=model_type, activation_fn=activation)


def _module_kind(entry: dict, i: int, where: str) -> str:
    kind = entry["type"].rsplit(".", 1)[-1]
    if not entry["type"].startswith("sentence_transformers.") or kind not in MODULE_KINDS:
        raise SentenceFolderError(f"{where}: module {i} ({entry.get('path') or 'the folder'}) has type "
                                  f"{entry['type']!r}, which minibert does not implement; it reads "
                                  f"{', '.join(MODULE_KINDS)}")
    return kind


def _read_pooling(path: str, hidden: int) -> Pooling:
    cfg = read_json(path, required=True)
    mode = cfg.get("pooling_mode")
    if mode is None:
        mode = [m for key, m in LEGACY_POOLING_KEYS.items() if _flag(cfg, key, False, path)] or ["mean"]
    if not isinstance(mode, (str, list)) or not mode:
        raise SentenceFolderError(f"{path}: pooling_mode must be a mode's name or a non-empty list of them, got "
                                  f"{mode!r}")
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    for m in modes:
        if m not in POOLING_MODES:
            raise SentenceFolderError(f"{path}: unknown pooling mode {m!r}; sentence-transformers has "
                                      f"{', '.join(POOLING_MODES)}")
    dim = cfg.get("embedding_dimension", cfg.get("word_embedding_dimension"))
    if dim is not None and dim != hidden:
        raise SentenceFolderError(f"{path}: embedding_dimension={dim} but the model's hidden_size is {hidden}")
    return Pooling(modes, _flag(cfg, "include_prompt", True, path))


def _read_dense(path: str, dim_in: int) -> Dense:
    where = os.path.join(path, "config.json")
    cfg = read_json(where, required=True)
    n_in, n_out = cfg.get("in_features"), cfg.get("out_features")
    for key, value in (("in_features", n_in), ("out_features", n_out)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SentenceFolderError(f"{where}: {key} must be a positive integer, got {value!r}")
    bias, residual = _flag(cfg, "bias", True, where), _flag(cfg, "use_residual", False, where)
    if n_in != dim_in:
        raise SentenceFolderError(f"{where}: in_features={n_in} but the module before it gives vectors of "
                                  f"{dim_in}: this Dense does not fit the model")
    weights = os.path.join(path, "model.safetensors")
    if not os.path.isfile(weights):
        pickled = os.path.join(path, "pytorch_model.bin")
        if os.path.isfile(pickled):
            raise SentenceFolderError(
                f"{path} has its Dense weights only as {os.path.basename(pickled)} (a pickle minibert does not load); "
                f"convert it once: python -c \"import torch, safetensors.torch as s; "
                f"s.save_file(torch.load('{pickled}'), '{weights}')\"")
        raise SentenceFolderError(f"{path} has no model.safetensors with the Dense weights")
    from safetensors.numpy import load_file

    state = load_file(weights)
    w, b = state.get("linear.weight"), state.get("linear.bias")
    if w is None or w.shape != (n_out, n_in):
        got = "none" if w is None else str(tuple(w.shape))
        raise SentenceFolderError(f"{weights}: linear.weight must be ({n_out}, {n_in}) as config.json says, got {got}")
    if bias and (b is None or b.shape != (n_out,)):
        raise SentenceFolderError(f"{weights}: linear.bias must be ({n_out},), got "
                                  f"{'none' if b is None else tuple(b.shape)}")
    r = state.get("residual.weight")
    if residual and n_in != n_out and (r is None or r.shape != (n_out, n_in)):
        raise SentenceFolderError(f"{weights}: use_residual with in_features != out_features needs residual.weight "
                                  f"({n_out}, {n_in})")
    activation = activation_name(cfg.get("activation_function", "torch.nn.modules.activation.Tanh"),
                                 f"{where} activation_function")
    f32 = lambda a: None if a is None else a.astype(np.float32)  # noqa: E731
    return Dense(f32(w), f32(b) if bias else None, activation, residual,
                 f32(r) if residual and n_in != n_out else None)


def _max_seq_length(model_folder: str, tf_config: dict, tf_where: str, model_config: dict) -> int:
    """sentence-transformers' rule: max_seq_length from sentence_bert_config.json (2.x-4.x), else the
    tokenizer's model_max_length (5.x writes it there) capped at max_position_embeddings."""
    value = _length(tf_config, "max_seq_length", tf_where)
    if value is None:
        kwargs = _settings(tf_config, "processor_kwargs", tf_where) or _settings(tf_config, "tokenizer_args", tf_where)
        value = _length(kwargs, "model_max_length", tf_where)
    if value is None:
        where = os.path.join(model_folder, "tokenizer_config.json")
        value = _length(read_json(where), "model_max_length", where) or VERY_LARGE
        positions = model_config.get("max_position_embeddings")
        if isinstance(positions, int) and positions > 0:
            value = min(value, positions)
        # RoBERTa counts positions from pad_token_id + 1: its last usable position is max_position_embeddings - 2
        pad = model_config.get("pad_token_id", 1)
        fam = family(model_config.get("model_type"))
        if fam is not None and fam.positions == "from padding" and value == positions \
                and isinstance(pad, int) and 0 <= pad < positions - 1:
            value = positions - (pad + 1)
    return value


def _length(cfg: dict, key: str, where: str) -> int | None:
    """A token count from a folder's file: a positive number (transformers writes 1e30 for "no limit"), or None."""
    value = cfg.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value < float("inf"):
        raise SentenceFolderError(f"{where}: {key} must be a positive integer, got {value!r}")
    return int(value)


def apply_lowercase(tokenizer) -> None:
    """do_lower_case in sentence_bert_config.json: sentence-transformers puts a Lowercase normalizer first
    when the tokenizer does not lowercase already."""
    from tokenizers import normalizers

    backend = tokenizer.backend_tokenizer
    current = backend.normalizer
    text = json.dumps(json.loads(current.__getstate__()) if current is not None else {})
    if '"lowercase": true' in text or '"Lowercase"' in text:
        return
    steps = [normalizers.Lowercase()] + ([current] if current is not None else [])
    backend.normalizer = normalizers.Sequence(steps)


# -- similarity and quantisation, as sentence_transformers.util -----------------------------------
def similarity(a, b, fn: str = "cosine") -> np.ndarray:
    """(n, d) x (m, d) -> (n, m): cosine, dot, or negative euclidean / manhattan distances."""
    a, b = np.atleast_2d(np.asarray(a, np.float32)), np.atleast_2d(np.asarray(b, np.float32))
    if fn == "cosine":
        return l2_normalize(a) @ l2_normalize(b).T
    if fn == "dot":
        return a @ b.T
    if fn == "euclidean":
        return -np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    if fn == "manhattan":
        return -np.abs(a[:, None, :] - b[None, :, :]).sum(-1)
    raise ValueError(f"similarity function {fn!r}; use one of {', '.join(SIMILARITY_FNS)}")


def quantize_embeddings(embeddings: np.ndarray, precision: str) -> np.ndarray:
    """sentence_transformers.quantize_embeddings without calibration data: int8/uint8 buckets between each
    dimension's min and max over these embeddings; binary/ubinary packs the sign bits (> 0) into bytes."""
    if precision == "float32":
        return embeddings.astype(np.float32)
    if precision in ("int8", "uint8"):
        ranges = np.vstack((embeddings.min(axis=0), embeddings.max(axis=0)))
        starts, steps = ranges[0, :], (ranges[1, :] - ranges[0, :]) / 255
        steps = np.where(steps == 0, 1, steps)  # a constant dimension: one bucket
        q_vals = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
        return q_vals.astype(np.uint8) if precision == "uint8" else (q_vals - 128).astype(np.int8)
    if precision == "binary":
        return (np.packbits(embeddings > 0, axis=-1).reshape(embeddings.shape[0], -1) - 128).astype(np.int8)
    if precision == "ubinary":
        return np.packbits(embeddings > 0, axis=-1).reshape(embeddings.shape[0], -1)
    raise ValueError(f"precision={precision!r}; use one of {', '.join(PRECISIONS)}")


# -- the API ---------------------------------------------------------------------------------------
