"""Model configurations: plain dataclasses whose fields are the keys of a Hub `config.json`.

`BertConfig()` and `DistilBertConfig()` default to bert-base-uncased and distilbert-base-uncased.
Keys we do not use (``transformers_version``, ``architectures``, ...) are kept in ``extra`` and
written back by ``to_dict`` so a config survives a load/save round trip unchanged.
Every family's dataclass is here rather than in its model module so that configs load without
TensorFlow; the family registry (`minibert.families`) names them. That is why the file runs past 500
lines: ten families, each with the checks that refuse a config its model cannot run.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .families import REGISTRY

CONFIG_NAME = "config.json"


class ConfigError(ValueError):
    """A config.json that is missing, malformed or describes a model minibert cannot build."""


# A config.json is untrusted input: `"n_layers": 1000000` or `"vocab_size": 1e12` would otherwise make
# the model builder allocate until the machine runs out of memory, and sizes past 2**31 reach
# TensorFlow as negative int32 dimensions. So every size is checked, and the weights' float32 size
# bounded, before anything is built. 8 GiB (2**31 parameters) is six times bert-large; a user with a
# bigger model and the memory for it raises the limit with this environment variable (a byte count).
MAX_WEIGHT_BYTES_ENV = "MINIBERT_MAX_WEIGHT_BYTES"
DEFAULT_MAX_WEIGHT_BYTES = 8 * 2**30


def max_weight_bytes() -> int:
    value = os.environ.get(MAX_WEIGHT_BYTES_ENV)
    if not value:
        return DEFAULT_MAX_WEIGHT_BYTES
    try:
        return int(float(value))  # float() so that "16e9" works
    except ValueError:
        raise ConfigError(f"{MAX_WEIGHT_BYTES_ENV}={value!r} is not a number of bytes") from None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not to us


def validate(config: "PretrainedConfig", num_labels=None) -> None:
    """Refuse sizes that are not positive integers, label maps that are not indexed by integers,
    and models whose float32 weights exceed `max_weight_bytes()`; cheap, and before anything is built."""
    sizes = {name: getattr(config, name) for name in config.size_fields}
    if num_labels is not None:
        sizes["num_labels"] = num_labels
    for name, value in sizes.items():
        if not _is_int(value):
            raise ConfigError(f"{name} must be a positive integer, not {value!r} ({type(value).__name__})")
        if value < 1:
            raise ConfigError(f"{name} must be a positive integer, not {value}")
        if value >= 2**31:  # TensorFlow takes shapes as int32 in places
            raise ConfigError(f"{name}={value} is too large (sizes must be below 2**31)")
    for name in ("id2label", "label2id"):
        value = getattr(config, name)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{name} must be a JSON object, not {type(value).__name__}")
    for key in config.id2label or {}:
        # JSON object keys are strings: "0" is label 0, as in transformers; "zero" or "1.5" is no index.
        if not (_is_int(key) or isinstance(key, str) and key.isascii() and key.isdigit()):
            raise ConfigError(f"id2label key {key!r} is not an integer (keys are class indices: 0, 1, ...)")
    keys = sorted(int(key) for key in config.id2label or {})
    if keys != list(range(len(keys))):  # the classifier's outputs are 0..n-1, and each needs a label
        raise ConfigError(f"id2label keys must be 0..{len(keys) - 1}, one per class, not {keys[:20]}")
    for label, index in (config.label2id or {}).items():
        if not (_is_int(index) or isinstance(index, str) and index.isascii() and index.isdigit()):
            raise ConfigError(f"label2id[{label!r}] = {index!r} is not an integer class index")
    for name in ("hidden_act", "activation", "summary_activation"):  # the families' activation fields
        value = getattr(config, name, None)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{name} must be an activation's name (a string such as 'gelu'), not {value!r}")
    eps = getattr(config, "layer_norm_eps", None)
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < float("inf")):
        # LayerNorm divides by sqrt(variance + eps): a zero variance with eps <= 0 gives NaN scores.
        raise ConfigError(f"layer_norm_eps must be a positive number, not {eps!r}")
    labels = num_labels or len(config.id2label or config.label2id or {}) or 2
    n = config.parameter_count(labels)
    if 4 * n > max_weight_bytes():
        raise ConfigError(
            f"this config describes a model of {n:,} parameters, {4 * n / 2**30:,.1f} GiB in float32 "
            f"({_size_culprits(config, labels, n)}), over minibert's limit of {max_weight_bytes() / 2**30:,.1f} "
            f"GiB; if the sizes are intended and the memory is there, raise the limit: "
            f"{MAX_WEIGHT_BYTES_ENV}={4 * n} (bytes)"
        )


def _size_culprits(config: "PretrainedConfig", labels: int, n: int) -> str:
    """The sizes behind a parameter count, the fields that add the most over their defaults first:
    "num_hidden_layers=1000000; with vocab_size=100, hidden_size=64, ..."."""
    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    sizes = {name: getattr(config, name) for name in config.size_fields}
    added = {}
    for name, value in sizes.items():  # the count with this one field at its default: what the field adds
        fixed = copy.copy(config)  # not dataclasses.replace: that would validate, and refuse, again
        setattr(fixed, name, defaults.get(name, value))
        added[name] = n - fixed.parameter_count(labels)
    if config.parameter_count(2) < n:  # the labels, named only when they add
        sizes["num_labels"], added["num_labels"] = labels, n - config.parameter_count(2)
    culprits = sorted((name for name in added if added[name] > 0), key=lambda name: -added[name])
    rest = [name for name in sizes if name not in culprits]
    named = lambda names: ", ".join(f"{name}={sizes[name]}" for name in names)  # noqa: E731
    return f"{named(culprits)}; with {named(rest)}" if culprits and rest else named(culprits or rest)


@dataclass(repr=False)
class PretrainedConfig:
    """Fields shared by every model family (labels, special ids) and the JSON plumbing."""

    model_type: ClassVar[str] = ""
    size_fields: ClassVar[tuple] = ()  # the fields that size tensors, checked by `validate`

    id2label: dict | None = None
    label2id: dict | None = None
    num_labels: dataclasses.InitVar[int | None] = None
    pad_token_id: int | None = 0
    # "multi_label_classification" makes a classifier's pipeline default to sigmoid, as in transformers.
    problem_type: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self, num_labels):
        if isinstance(num_labels, property):  # the InitVar's default is the property below
            num_labels = None
        validate(self, num_labels)
        if self.id2label is None:
            n = num_labels if num_labels is not None else len(self.label2id or {}) or 2
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
        # JSON object keys are strings: "0" -> 0, as transformers does.
        self.id2label = {int(k): v for k, v in self.id2label.items()}
        if num_labels is not None and num_labels != len(self.id2label):
            raise ConfigError(f"num_labels={num_labels} but id2label has {len(self.id2label)} entries")
        if self.label2id is None:
            self.label2id = {v: k for k, v in self.id2label.items()}
        self.label2id = {k: int(v) for k, v in self.label2id.items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def parameter_count(self, num_labels: int) -> int:
        """Weights of this family's sequence classifier, in Python ints (which cannot overflow)."""
        return 0

    # -- dict / JSON ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "PretrainedConfig":
        d = {**d, **overrides}
        mt = d.get("model_type", cls.model_type)
        if cls.model_type and mt != cls.model_type:
            raise ConfigError(f"config has model_type {mt!r}, expected {cls.model_type!r} for {cls.__name__}")
        names = {f.name for f in dataclasses.fields(cls)} | {"num_labels"}
        known = {k: v for k, v in d.items() if k in names and k != "extra"}
        extra = {k: v for k, v in d.items() if k not in names and k != "model_type"}
        extra.update(d.get("extra", {}))
        try:
            return cls(**known, extra=extra)
        except TypeError as e:  # wrong value types surface here
            raise ConfigError(f"invalid {cls.__name__} values: {e}") from None

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        d.update(self.extra)
        d["model_type"] = self.model_type
        d["id2label"] = {str(k): v for k, v in self.id2label.items()}
        return d

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        os.makedirs(save_directory, exist_ok=True)
        with open(os.path.join(save_directory, CONFIG_NAME), "w", encoding="utf-8") as f:
            f.write(self.to_json_string())

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs) -> "PretrainedConfig":
        """Read `config.json` from a folder or a Hub id. Extra kwargs override fields."""
        from .checkpoint import HUB_KWARGS, resolve

        folder = resolve(name_or_path, **{k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs})
        d = read_config_dict(folder)
        if cls is PretrainedConfig:  # AutoConfig-like use
            cls = config_class_for(d.get("model_type"), folder)
        try:
            return cls.from_dict(d, **kwargs)
        except ConfigError as e:  # name the file: the dataclass does not know where its values came from
            raise ConfigError(f"{os.path.join(folder, CONFIG_NAME)}: {e}") from None


@dataclass(repr=False)
class BertConfig(PretrainedConfig):
    """bert-base-uncased by default. Mirrors transformers' BertConfig keys."""

    model_type: ClassVar[str] = "bert"
    size_fields: ClassVar[tuple] = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                    "intermediate_size", "max_position_embeddings", "type_vocab_size")

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    position_embedding_type: str = "absolute"
    classifier_dropout: float | None = None

    def __post_init__(self, num_labels):
        super().__post_init__(num_labels)
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads={self.num_attention_heads}"
            )
        if self.position_embedding_type != "absolute":
            raise ConfigError(f"position_embedding_type={self.position_embedding_type!r} is not supported (only 'absolute')")

    @property
    def max_sequence_length(self) -> int:
        """The longest input in tokens: one position embedding per token."""
        return self.max_position_embeddings

    def parameter_count(self, num_labels: int) -> int:
        h, i = self.hidden_size, self.intermediate_size
        embeddings = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h + 2 * h
        layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h  # q k v out, ffn, 2 LayerNorms
        return embeddings + self.num_hidden_layers * layer + (h * h + h) + (h * num_labels + num_labels)


@dataclass(repr=False)
class DistilBertConfig(PretrainedConfig):
    """distilbert-base-uncased by default. Mirrors transformers' DistilBertConfig keys."""

    model_type: ClassVar[str] = "distilbert"
    size_fields: ClassVar[tuple] = ("vocab_size", "max_position_embeddings", "n_layers", "n_heads", "dim", "hidden_dim")

    vocab_size: int = 30522
    max_position_embeddings: int = 512
    sinusoidal_pos_embds: bool = False
    n_layers: int = 6
    n_heads: int = 12
    dim: int = 768
    hidden_dim: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "gelu"
    initializer_range: float = 0.02
    qa_dropout: float = 0.1
    seq_classif_dropout: float = 0.2

    def __post_init__(self, num_labels):
        super().__post_init__(num_labels)
        if self.dim % self.n_heads:
            raise ConfigError(f"dim={self.dim} is not a multiple of n_heads={self.n_heads}")

    def parameter_count(self, num_labels: int) -> int:
        d, f = self.dim, self.hidden_dim
        embeddings = (self.vocab_size + self.max_position_embeddings) * d + 2 * d
        layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d  # q k v out, ffn, 2 LayerNorms
        return embeddings + self.n_layers * layer + (d * d + d) + (d * num_labels + num_labels)

    # The names the other families use, so shared code never asks which family it holds.
    hidden_size = property(lambda self: self.dim)
    num_hidden_layers = property(lambda self: self.n_layers)
    num_attention_heads = property(lambda self: self.n_heads)
    type_vocab_size = property(lambda self: 1, doc="DistilBERT has no token types: only type 0 is valid")
    max_sequence_length = property(lambda self: self.max_position_embeddings)


@dataclass(repr=False)
class RobertaConfig(BertConfig):
    """transformers' RobertaConfig: BERT's keys and defaults, except the byte-level BPE vocabulary and
    its special ids (`<s>` 0, `<pad>` 1, `</s>` 2). Hub checkpoints also set 514 positions and eps 1e-5."""

    model_type: ClassVar[str] = "roberta"

    vocab_size: int = 50265
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2

    def __post_init__(self, num_labels):
        super().__post_init__(num_labels)
        if self.pad_token_id is None or not 0 <= self.pad_token_id < self.max_position_embeddings - 1:
            raise ConfigError(f"pad_token_id={self.pad_token_id} leaves no position for a token: RoBERTa's positions "
                              f"start at pad_token_id + 1 and max_position_embeddings is {self.max_position_embeddings}")

    @property
    def max_sequence_length(self) -> int:
        # Positions are pad_token_id + 1, pad_token_id + 2, ...: the first pad_token_id + 1 rows are never a token's.
        return self.max_position_embeddings - self.pad_token_id - 1


@dataclass(repr=False)
class XLMRobertaConfig(RobertaConfig):
    """The RoBERTa architecture under its own type name, with XLM-R's SentencePiece vocabulary."""

    model_type: ClassVar[str] = "xlm-roberta"

    vocab_size: int = 250002


@dataclass(repr=False)
class ElectraConfig(BertConfig):
    """transformers' ElectraConfig (electra-small-discriminator's sizes by default): BERT's keys plus
    `embedding_size`, the width of the embeddings before `embeddings_project`, and the `summary_*`
    keys of the multiple-choice head."""

    model_type: ClassVar[str] = "electra"
    size_fields: ClassVar[tuple] = BertConfig.size_fields + ("embedding_size",)

    embedding_size: int = 128
    hidden_size: int = 256
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    summary_type: str = "first"
    summary_use_proj: bool = True
    summary_activation: str = "gelu"
    summary_last_dropout: float = 0.1

    def parameter_count(self, num_labels: int) -> int:
        # BERT's count at the embedding width, plus embeddings_project; close enough for a memory limit.
        e = self.embedding_size
        return super().parameter_count(num_labels) - (self.vocab_size + self.max_position_embeddings
                                                      + self.type_vocab_size) * (self.hidden_size - e) + e * self.hidden_size


@dataclass(repr=False)
class DebertaV2Config(BertConfig):
    """transformers' DebertaV2Config (deberta-v2-xlarge's sizes by default, as there). The keys only some
    checkpoints write (`position_buckets`, `share_att_key`, `norm_rel_ebd`, `conv_*`, `embedding_size`,
    `pooler_hidden_size`) default to what transformers reads when they are absent. deberta-v3 writes
    `type_vocab_size` 0 (token types read but ignored), `relative_attention` true, `position_buckets` 256,
    `position_biased_input` false (no absolute positions) and `pos_att_type` ["p2c", "c2p"]."""

    model_type: ClassVar[str] = "deberta-v2"
    # type_vocab_size may be 0 (no token-type table): checked in __post_init__ instead.
    size_fields: ClassVar[tuple] = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                    "intermediate_size", "max_position_embeddings")
    POS_ATT_TYPES: ClassVar[tuple] = ("c2p", "p2c")

    vocab_size: int = 128100
    hidden_size: int = 1536
    num_hidden_layers: int = 24
    num_attention_heads: int = 24
    intermediate_size: int = 6144
    type_vocab_size: int = 0
    layer_norm_eps: float = 1e-7
    relative_attention: bool = False
    max_relative_positions: int = -1
    position_biased_input: bool = True
    pos_att_type: Any = None  # a list of "c2p", "p2c", or the older "p2c|c2p" string
    position_buckets: int = -1
    share_att_key: bool = False
    norm_rel_ebd: str = "none"
    pooler_hidden_size: int | None = None  # None: hidden_size
    pooler_dropout: float = 0.0
    pooler_hidden_act: str = "gelu"
    cls_dropout: float | None = None
    embedding_size: int | None = None  # None: hidden_size
    conv_kernel_size: int = 0
    conv_groups: int = 1
    conv_act: str = "tanh"
    attention_head_size: int | None = None
    legacy: bool = True  # masked LM head: `cls.predictions` (legacy) or `lm_predictions.lm_head`

    def __post_init__(self, num_labels):
        super().__post_init__(num_labels)
        if isinstance(self.pos_att_type, str):  # transformers' backwards compatibility: "p2c|c2p"
            self.pos_att_type = [x.strip() for x in self.pos_att_type.lower().split("|")]
        self.pos_att_type = list(self.pos_att_type or [])
        for kind in self.pos_att_type:
            if kind not in self.POS_ATT_TYPES:
                raise ConfigError(f"pos_att_type {kind!r} is not supported (DeBERTa-v2 has {list(self.POS_ATT_TYPES)})")
        for kind in (x.strip() for x in str(self.norm_rel_ebd).lower().split("|")):
            if kind not in ("none", "layer_norm"):
                raise ConfigError(f"norm_rel_ebd {kind!r} is not supported (only 'layer_norm' or 'none')")
        if not _is_int(self.type_vocab_size) or self.type_vocab_size < 0:
            raise ConfigError(f"type_vocab_size must be a non-negative integer, not {self.type_vocab_size!r}")
        for name in ("embedding_size", "pooler_hidden_size", "attention_head_size"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise ConfigError(f"{name} must be a positive integer, not {value!r}")
        if self.pooler_hidden_size not in (None, self.hidden_size):
            raise ConfigError(f"pooler_hidden_size={self.pooler_hidden_size} differs from hidden_size={self.hidden_size}: "
                              "transformers' classifier reads the pooler at hidden_size")
        if self.attention_head_size not in (None, self.hidden_size // self.num_attention_heads):
            raise ConfigError(f"attention_head_size={self.attention_head_size} is not hidden_size / num_attention_heads "
                              f"({self.hidden_size // self.num_attention_heads}): the attention output is hidden_size wide")
        if self.conv_kernel_size and (not _is_int(self.conv_kernel_size) or self.conv_kernel_size < 0
                                      or self.conv_kernel_size % 2 == 0):
            raise ConfigError(f"conv_kernel_size={self.conv_kernel_size!r} is not supported (an odd width, or 0 for none)")
        if self.conv_kernel_size and self.conv_groups != 1:
            raise ConfigError(f"conv_groups={self.conv_groups!r} is not supported (only 1, as the Hub models have)")
        if self.relative_attention and self.position_buckets > 0 and self.relative_span - 1 <= self.position_buckets // 2:
            raise ConfigError(f"max_relative_positions={self.relative_span} must exceed position_buckets / 2 + 1 "
                              f"({self.position_buckets // 2 + 1}): the log buckets divide by log((max - 1) / (buckets / 2))")

    def to_dict(self) -> dict:
        # transformers reads these with getattr(config, name, default): a written null would be used as is.
        d = super().to_dict()
        return {k: v for k, v in d.items() if not (v is None and k in ("embedding_size", "pooler_hidden_size",
                                                                        "attention_head_size"))}

    @property
    def embedding_width(self) -> int:
        return self.embedding_size or self.hidden_size

    @property
    def relative_span(self) -> int:
        """The largest relative distance told apart: max_relative_positions, or max_position_embeddings if unset."""
        return self.max_relative_positions if self.max_relative_positions >= 1 else self.max_position_embeddings

    @property
    def pos_ebd_size(self) -> int:
        """Half the rows of the relative-position table: position_buckets if set, else relative_span."""
        return self.position_buckets if self.position_buckets > 0 else self.relative_span

    def parameter_count(self, num_labels: int) -> int:
        h, i, e = self.hidden_size, self.intermediate_size, self.embedding_width
        positions = self.max_position_embeddings if self.position_biased_input else 0
        embeddings = (self.vocab_size + positions + self.type_vocab_size) * e + (e * h if e != h else 0) + 2 * h
        layer = 6 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h  # q k v (+ pos q k), out, ffn, 2 LayerNorms
        relative = 2 * self.pos_ebd_size * h + 2 * h if self.relative_attention else 0
        conv = self.conv_kernel_size * h * h + 3 * h
        return embeddings + self.num_hidden_layers * layer + relative + conv + (h * h + h) + (h * num_labels + num_labels)


@dataclass(repr=False)
class CamembertConfig(RobertaConfig):
    """The RoBERTa architecture under CamemBERT's type name (French SentencePiece vocabulary); transformers'
    CamembertConfig keeps BERT's default vocabulary size."""

    model_type: ClassVar[str] = "camembert"

    vocab_size: int = 30522


@dataclass(repr=False)
class Data2VecTextConfig(RobertaConfig):
    """The RoBERTa architecture under data2vec-text's type name (RoBERTa's byte-level BPE); transformers'
    Data2VecTextConfig keeps BERT's default vocabulary size."""

    model_type: ClassVar[str] = "data2vec-text"

    vocab_size: int = 30522


@dataclass(repr=False)
class MPNetConfig(PretrainedConfig):
    """transformers' MPNetConfig (all-mpnet-base-v2's sizes by default): BERT's sizes without token types,
    plus `relative_attention_num_buckets`, the rows of the relative position bias shared by every layer."""

    model_type: ClassVar[str] = "mpnet"
    size_fields: ClassVar[tuple] = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                    "intermediate_size", "max_position_embeddings", "relative_attention_num_buckets")
    # transformers' MPNetEmbeddings counts positions from token id 1 whatever pad_token_id says, and its
    # encoder always buckets relative positions into 32 (compute_position_bias's default), not the config's count.
    padding_idx: ClassVar[int] = 1
    position_buckets: ClassVar[int] = 32

    vocab_size: int = 30527
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    relative_attention_num_buckets: int = 32
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2

    def __post_init__(self, num_labels):
        super().__post_init__(num_labels)
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads={self.num_attention_heads}"
            )
        if self.relative_attention_num_buckets < self.position_buckets:
            raise ConfigError(f"relative_attention_num_buckets={self.relative_attention_num_buckets} is too few: "
                              f"MPNet buckets relative positions into {self.position_buckets}, one row each")
        if self.max_position_embeddings <= self.padding_idx + 1:
            raise ConfigError(f"max_position_embeddings={self.max_position_embeddings} leaves no position for a "
                              f"token: MPNet's positions start at {self.padding_idx + 1}")

    # MPNet has no token types: only type 0 is valid.
    type_vocab_size = property(lambda self: 1)

    @property
    def max_sequence_length(self) -> int:
        return self.max_position_embeddings - self.padding_idx - 1  # positions 2, 3, ...: rows 0 and 1 are no token's

    def parameter_count(self, num_labels: int) -> int:
        h, i = self.hidden_size, self.intermediate_size
        embeddings = (self.vocab_size + self.max_position_embeddings) * h + 2 * h
        layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h  # q k v o, ffn, 2 LayerNorms
        bias = self.relative_attention_num_buckets * self.num_attention_heads
        return embeddings + bias + self.num_hidden_layers * layer + 2 * (h * h + h) + (h * num_labels + num_labels)


@dataclass(repr=False)
class ModernBertConfig(PretrainedConfig):
    """answerdotai/ModernBERT-base by default. Mirrors transformers' ModernBertConfig keys: rotary positions
    (`global_rope_theta`, `local_rope_theta`), every `global_attn_every_n_layers`-th layer global and the
    others attending `local_attention // 2` tokens each side, bias-free projections and LayerNorms unless
    `attention_bias`, `mlp_bias`, `norm_bias` say otherwise."""

    model_type: ClassVar[str] = "modernbert"
    size_fields: ClassVar[tuple] = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                    "num_attention_heads", "max_position_embeddings", "global_attn_every_n_layers",
                                    "local_attention")
    POOLINGS: ClassVar[tuple] = ("cls", "mean")

    vocab_size: int = 50368
    hidden_size: int = 768
    intermediate_size: int = 1152
    num_hidden_layers: int = 22
    num_attention_heads: int = 12
    hidden_activation: str = "gelu"
    max_position_embeddings: int = 8192
    initializer_range: float = 0.02
    initializer_cutoff_factor: float = 2.0
    norm_eps: float = 1e-5
    norm_bias: bool = False
    pad_token_id: int | None = 50283
    eos_token_id: int | None = 50282
    bos_token_id: int | None = 50281
    cls_token_id: int | None = 50281
    sep_token_id: int | None = 50282
    global_rope_theta: float = 160000.0
    attention_bias: bool = False
    attention_dropout: float = 0.0
    global_attn_every_n_layers: int = 3
    local_attention: int = 128
    local_rope_theta: float | None = 10000.0
    embedding_dropout: float = 0.0
    mlp_bias: bool = False
    mlp_dropout: float = 0.0
    decoder_bias: bool = True
    classifier_pooling: str = "cls"
    classifier_dropout: float = 0.0
    classifier_bias: bool = False
    classifier_activation: str = "gelu"
    tie_word_embeddings: bool = True

    def __post_init__(self, num_labels):
        super().__post_init__(num_labels)
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads={self.num_attention_heads}")
        if self.classifier_pooling not in self.POOLINGS:
            raise ConfigError(f"classifier_pooling={self.classifier_pooling!r} is not supported (only 'cls' or 'mean')")
        # A sliding window is local_attention // 2 tokens each side: an odd value would mean a window it does not
        # have, and past twice the positions every token already sees every other (while the banded blocks grow).
        if self.local_attention % 2:
            raise ConfigError(f"local_attention={self.local_attention} must be even (a window of local_attention // 2 "
                              "tokens each side)")
        if self.local_attention > 2 * self.max_position_embeddings:
            raise ConfigError(f"local_attention={self.local_attention} is more than twice max_position_embeddings="
                              f"{self.max_position_embeddings}; a window that wide sees every token already")
        for name in ("global_rope_theta", "local_rope_theta"):
            theta = getattr(self, name)
            if theta is None and name == "local_rope_theta":  # None: the local layers use global_rope_theta
                continue
            if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not 0 < theta < float("inf"):
                # the rotary frequencies are theta ** -(2i / D): 0, negative or NaN make every output NaN
                raise ConfigError(f"{name} must be a positive finite number, not {theta!r}")
        # Rotary variants transformers reads from these keys would change every score: refuse, never approximate.
        rope = self.extra.get("rope_scaling")
        if rope is not None and (not isinstance(rope, dict) or rope.get("rope_type", rope.get("type")) != "default"):
            raise ConfigError(f"rope_scaling={rope!r} is not supported (only the default rotary embedding)")
        if self.extra.get("partial_rotary_factor", 1.0) != 1.0:
            raise ConfigError(f"partial_rotary_factor={self.extra['partial_rotary_factor']!r} is not supported "
                              "(only 1.0)")
        head_dim = self.extra.get("head_dim")
        if head_dim is not None and head_dim != self.hidden_size // self.num_attention_heads:
            raise ConfigError(f"head_dim={head_dim!r} is not supported (only hidden_size // num_attention_heads)")

    # The names the other families use, so shared code never asks which family it holds.
    type_vocab_size = property(lambda self: 1, doc="ModernBERT has no token types: only type 0 is valid")
    max_sequence_length = property(lambda self: self.max_position_embeddings)

    def parameter_count(self, num_labels: int) -> int:
        h, i = self.hidden_size, self.intermediate_size
        layer = 4 * h * h + 2 * h * i + i * h + 2 * h  # Wqkv, Wo, Wi (2 x intermediate), Wo, 2 norms
        head = (h * h + h) + (h * num_labels + num_labels)
        return self.vocab_size * h + self.num_hidden_layers * layer + 2 * h + head


# model_type -> config class: each registry line names its class ({prefix}Config), defined above.
CONFIG_CLASSES = {model_type: globals()[f.config_name] for model_type, f in REGISTRY.items()}


def config_class_for(model_type, where="config.json") -> type[PretrainedConfig]:
    if model_type not in CONFIG_CLASSES:
        raise ConfigError(
            f"unknown model_type {model_type!r} in {where}; supported: {', '.join(sorted(CONFIG_CLASSES))}"
        )
    return CONFIG_CLASSES[model_type]


def read_config_dict(folder: str | os.PathLike) -> dict:
    """Parse `folder/config.json`, with an error that says what is wrong and where."""
    from .checkpoint import unreadable, contents

    path = os.path.join(folder, CONFIG_NAME)
    if not os.path.lexists(path):
        raise ConfigError(f"no {CONFIG_NAME} in {folder} ({contents(folder)})")
    problem = unreadable(path)  # a FIFO, a looping link, a directory: said as what it is, not "missing"
    if problem:
        raise ConfigError(f"{path} {problem}")
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to be a config") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path} must hold a JSON object, not {type(d).__name__}")
    return d


class AutoConfig:
    """`AutoConfig.from_pretrained(path_or_id)` picks the config class from `model_type`."""

    @staticmethod
    def from_pretrained(name_or_path, **kwargs) -> PretrainedConfig:
        return PretrainedConfig.from_pretrained(name_or_path, **kwargs)

    @staticmethod
    def for_model(model_type: str, **kwargs) -> PretrainedConfig:
        return config_class_for(model_type, "AutoConfig.for_model")(**kwargs)
