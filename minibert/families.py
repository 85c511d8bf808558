"""The model families, one line each in `REGISTRY`: every other table that names a family is read from it.

Derived from here: `config.CONFIG_CLASSES` (model_type -> config class), `auto.FAMILIES` (model_type ->
head -> class), minibert's lazy public names (BertModel, TFXLMRobertaForMaskedLM, ElectraConfig, ...),
the tokenizer's conventions (which tokenizer_class or model_type means <s> ... </s>, which families
return token types) and the pipelines' tokenizer checks (`family(model_type)`). A new family is its
module under `minibert/models/`, its config dataclass in `minibert/config.py` and its line below.

This module imports nothing, and the records name classes rather than hold them: config and the
tokenizer read the registry and must import without TensorFlow, while everything under `minibert.models`
imports it (that package's `__init__` loads TensorFlow quietly before any family module imports keras),
so the registry cannot live in that package, and each reader looks the names up in its own layer.
For the same reason the config dataclasses stay in `config.py`, beside BERT's that most of them extend,
rather than in their family modules: AutoConfig and AutoTokenizer must not import keras.
"""
from __future__ import annotations

from dataclasses import dataclass

# The defaults of transformers' tokenizer classes, per convention, for folders that do not name their
# special tokens. WordPiece's [CLS] A [SEP] B [SEP] has no bos/eos; RoBERTa's starts with <s> and separates with </s>.
SPECIAL_TOKENS = {
    "wordpiece": {"bos_token": None, "eos_token": None, "unk_token": "[UNK]", "sep_token": "[SEP]",
                  "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"},
    "roberta": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"},
    # DeBERTa-v2/v3: WordPiece's bracketed tokens over a SentencePiece model, [CLS] and [SEP] also as bos/eos.
    "deberta": {"bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "[UNK]", "sep_token": "[SEP]",
                "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"},
    # MPNet's WordPiece with RoBERTa's layout (<s> A </s></s> B </s>) but BERT's [UNK].
    "mpnet": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "[UNK]", "sep_token": "</s>",
              "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"},
}
POSITIONS = ("absolute", "from padding", "relative")
# head name -> class-name suffix, as transformers names them (BertForMaskedLM).
HEAD_SUFFIXES = {"model": "Model", "sequence-classification": "ForSequenceClassification",
                 "multiple-choice": "ForMultipleChoice", "token-classification": "ForTokenClassification",
                 "question-answering": "ForQuestionAnswering", "masked-lm": "ForMaskedLM",
                 "pretraining": "ForPreTraining"}
# The heads every family has, written once in `minibert.heads`; each has an AutoModel class.
SHARED_HEADS = ("model", "sequence-classification", "multiple-choice", "token-classification",
                "question-answering", "masked-lm")


@dataclass(frozen=True)
class Family:
    model_type: str  # config.json's model_type
    module: str  # the module under minibert.models that defines the classes
    prefix: str  # of every class name: f"{prefix}Config", f"{prefix}Model", f"{prefix}ForMaskedLM", ...
    tokenizer: str  # "wordpiece" or "deberta" ([CLS] ... [SEP]), "roberta" or "mpnet" (<s> ... </s>): a key of SPECIAL_TOKENS
    token_types: bool  # whether the model reads token_type_ids, so its tokenizer returns them
    positions: str  # "absolute" (0, 1, ...), "from padding" (pad_token_id + 1, ...) or "relative" (query - key)
    tokenizer_classes: tuple[str, ...]  # tokenizer_config.json's tokenizer_class, less "Tokenizer"/"TokenizerFast"
    heads: tuple[str, ...] = SHARED_HEADS

    def __post_init__(self):
        if self.tokenizer not in SPECIAL_TOKENS or self.positions not in POSITIONS \
                or not set(self.heads) <= set(HEAD_SUFFIXES):
            raise ValueError(f"{self.model_type}: tokenizer must be one of {sorted(SPECIAL_TOKENS)}, positions one "
                             f"of {POSITIONS}, heads among {sorted(HEAD_SUFFIXES)}")

    @property
    def config_name(self) -> str:
        return f"{self.prefix}Config"

    @property
    def special_tokens(self) -> dict:
        return SPECIAL_TOKENS[self.tokenizer]

    def class_name(self, head: str) -> str:
        return self.prefix + HEAD_SUFFIXES[head]


REGISTRY = {f.model_type: f for f in (
    Family("bert", "bert", "Bert", "wordpiece", True, "absolute", ("Bert",)),
    Family("distilbert", "distilbert", "DistilBert", "wordpiece", False, "absolute", ("DistilBert",)),
    Family("roberta", "roberta", "Roberta", "roberta", False, "from padding", ("Roberta",)),
    # RoBERTa's architecture and classes under transformers' XLM-R names (SentencePiece vocabulary).
    Family("xlm-roberta", "roberta", "XLMRoberta", "roberta", False, "from padding", ("XLMRoberta",)),
    # The same again under CamemBERT's names (transformers' Camembert classes are RoBERTa's, copied).
    Family("camembert", "roberta", "Camembert", "roberta", False, "from padding", ("Camembert",)),
    # And under data2vec-text's (its checkpoints name their encoder `data2vec_text`; RoBERTa's tokenizer).
    Family("data2vec-text", "roberta", "Data2VecText", "roberta", False, "from padding", ()),
    # ELECTRA's tokenizer is BERT's, token types included.
    Family("electra", "electra", "Electra", "wordpiece", True, "absolute", ("Electra",),
           heads=SHARED_HEADS + ("pretraining",)),
    # DeBERTa-v2 and v3: disentangled attention over relative positions (v2 may add absolute ones too).
    Family("deberta-v2", "deberta_v2", "DebertaV2", "deberta", True, "relative", ("DebertaV2",)),
    # Relative position bias shared by every layer, positions as RoBERTa's, no token types.
    Family("mpnet", "mpnet", "MPNet", "mpnet", False, "from padding", ("MPNet",)),
    # ModernBERT's folders name PreTrainedTokenizerFast (a BPE with BERT's [CLS] ... [SEP] tokens), so only
    # model_type picks its convention; rotary positions count from 0 on every row.
    Family("modernbert", "modernbert", "ModernBert", "wordpiece", False, "absolute", ()),
)}


def family(model_type) -> Family | None:
    """The family of a config's `model_type` ("bert", "xlm-roberta", ...), or None for one minibert lacks."""
    return REGISTRY.get(model_type)
