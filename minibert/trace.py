"""What happens inside, stage by stage, with the real numbers: the course's "Behind the pipeline" walkthrough for any text.

`trace(texts, model, tokenizer)` returns a plain dict (JSON-ready) with the tokens, ids, attention
mask, a summary of the embedding output and of every layer's output, the vector fed to the head,
the logits, the softmax probabilities and the labels. `format_trace` prints it for a terminal, and
`plot_attention` draws the attention maps. Every attention map is kept (layers x heads x T x T weights
per text), so a trace holds at most MAX_ATTENTION_BYTES of them: about 512 tokens for one text of a
BERT-base model; a longer trace is refused before the model runs.
"""
from __future__ import annotations

import numpy as np

from .pipelines import TASKS
from .pipelines.base import TraceStage, rounded, softmax


def _summary(name: str, x: np.ndarray, mask: np.ndarray | None = None, n_values: int = 4) -> dict:
    """Shape, and mean/std over real tokens; the first values of text 0's first vector."""
    real = x[mask.astype(bool)] if mask is not None else x  # (tokens, C) of real positions
    first = x[0, 0] if x.ndim == 3 else x[0]
    return {"stage": name, "shape": list(x.shape), "mean": float(real.mean()), "std": float(real.std()),
            "first_values": [round(float(v), 4) for v in first[:n_values]]}


MAX_ATTENTION_BYTES = 1 << 30  # the attention maps one trace keeps: 12 layers x 12 heads x 1 x 512 x 512 is 151 MB


def trace(texts: list[str], model, tokenizer, max_length: int | None = None) -> dict:
    """Every stage for `texts` (a multiple-choice model reads them as the choices of one question)."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
    mask = enc["attention_mask"]
    check_attention_size(model.config, *mask.shape)
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    if model.takes_choices:
        inputs = {k: v[None] for k, v in inputs.items()}  # (N, T) -> (1, N, T)
    out = model(inputs, output_hidden_states=True, output_attentions=True)
    hidden = [h.numpy() for h in out.hidden_states]
    result = {
        "model": type(model).__name__,
        "texts": list(texts),
        "tokens": [tokenizer.convert_ids_to_tokens(row) for row in enc["input_ids"]],
        "input_ids": enc["input_ids"].tolist(),
        "attention_mask": mask.tolist(),
        "stages": [_summary("embeddings", hidden[0], mask)]
                  + [_summary(f"layer {i}", h, mask) for i, h in enumerate(hidden[1:])],  # 0-based, like out.attentions
        "attentions": {"layers": len(out.attentions), "shape": list(out.attentions[0].shape)},
    }
    if "token_type_ids" in enc:
        result["token_type_ids"] = enc["token_type_ids"].tolist()
    pooled, what = model.head_input(out.hidden_states[-1])  # each model says what its head starts from
    result["head_input"] = {**_summary(what, pooled.numpy()), "stage": what}
    head = head_of(model)
    if head in LAST_STAGES:
        result["head"] = head
        result.update(LAST_STAGES[head].compute(out, result["tokens"], mask, model.config, tokenizer))
    result["_attentions"] = [a.numpy() for a in out.attentions]  # for plotting; dropped from JSON
    return result


def check_attention_size(config, texts: int, tokens: int) -> None:
    """Refuse a trace whose attention maps (float32) would pass MAX_ATTENTION_BYTES, before the model runs."""
    L, H = config.num_hidden_layers, config.num_attention_heads
    size = 4 * L * H * texts * tokens * tokens
    if size > MAX_ATTENTION_BYTES:
        raise ValueError(f"a trace of {texts} text(s) of {tokens} tokens keeps {L} layers x {H} heads x {tokens} x "
                         f"{tokens} attention weights per text, {size / 2**30:.1f} GiB, more than the "
                         f"{MAX_ATTENTION_BYTES / 2**30:.0f} GiB trace allows: trace fewer or shorter texts (--max-length)")


def head_of(model) -> str:
    from .auto import FAMILIES

    return next((h for h, cls in FAMILIES[model.config.model_type].items() if isinstance(model, cls)), "model")


def _choice_scores(out, tokens, mask, config, tokenizer) -> dict:
    """One score per choice -> softmax over the choices -> the chosen text."""
    logits = out.logits.numpy()  # (1, N)
    probs = softmax(logits)
    return {"logits": rounded(logits), "probabilities": rounded(probs), "choice": int(probs[0].argmax())}


# Multiple choice is a head with no pipeline task (transformers has none): its stage is declared here;
# every other head's comes from the task that runs it.
MULTIPLE_CHOICE = TraceStage(
    "multiple-choice", "choice scores: softmax over the texts, the chosen text", _choice_scores,
    lambda r: [f"choice scores {r['logits'][0]} -> softmax over the texts {r['probabilities'][0]} -> text {r['choice']}"])
# What `trace` shows after the head, per head (the keys of `auto.FAMILIES[model_type]`).
LAST_STAGES = {**{t.trace.head: t.trace for t in TASKS.values() if t.trace is not None and t.trace.compute},
               MULTIPLE_CHOICE.head: MULTIPLE_CHOICE}


def to_json(result: dict) -> dict:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def format_trace(r: dict) -> str:
    lines = [f"model: {r['model']}", ""]
    n = len(r["texts"])
    for i in range(n):
        lines.append(f"text {i}: {r['texts'][i]!r}")
        lines.append(f"  tokens:         {' '.join(r['tokens'][i])}")
        lines.append(f"  input_ids:      {r['input_ids'][i]}")
        lines.append(f"  attention_mask: {r['attention_mask'][i]}")
        if "token_type_ids" in r:
            lines.append(f"  token_type_ids: {r['token_type_ids'][i]}")
    lines += ["", f"{'stage':<12} {'shape':<16} {'mean':>9} {'std':>9}  first values (text 0, first token)"]
    for s in r["stages"]:
        lines.append(f"{s['stage']:<12} {str(tuple(s['shape'])):<16} {s['mean']:>9.4f} {s['std']:>9.4f}  {s['first_values']}")
    a = r["attentions"]
    lines.append(f"attentions: {a['layers']} layers of {tuple(a['shape'])} (batch, heads, query, key)")
    h = r["head_input"]
    lines += ["", f"head input: {h['stage']}, shape {tuple(h['shape'])}, first values {h['first_values']}"]
    if r.get("head") in LAST_STAGES:
        lines += LAST_STAGES[r["head"]].lines(r)
    return "\n".join(lines)


def plot_attention(result: dict, path: str, text_index: int = 0, layer: int | None = None, head: int | None = None):
    """Attention maps as a PNG: layers x heads (or one layer / one head), tokens on both axes.

    Padded query rows are left blank and padded key columns are zero, so padding shows as empty.
    """
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting attention needs matplotlib: pip install 'minibert-tf[plot]' "
                          "(or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    att = np.stack([a[text_index] for a in result["_attentions"]])  # (layers, heads, T, T)
    L, H, T, _ = att.shape
    for name, value, limit in (("layer", layer, L), ("head", head, H)):
        if value is not None and not 0 <= value < limit:
            raise ValueError(f"--{name} {value} is out of range: the model has {limit} {name}s (0 to {limit - 1})")
    layers = [layer] if layer is not None else list(range(L))
    heads = [head] if head is not None else list(range(H))
    tokens = result["tokens"][text_index]
    mask = np.asarray(result["attention_mask"][text_index], bool)
    att = att.copy()
    att[:, :, ~mask, :] = np.nan  # padded queries: nothing to show
    att[:, :, :, ~mask] = np.nan  # padded keys get exactly 0 weight: drawn blank, not as a dark 0

    single = len(layers) * len(heads) == 1
    # One map: big enough for every token label. A grid: fixed-size cells that show the patterns;
    # token labels only on the outer edge and only while they fit (else: --layer/--head for one map).
    cell = max(5.0, 0.25 * T) if single else 1.5
    fig, axes = plt.subplots(len(layers), len(heads), figsize=(cell * len(heads) + 1.5, cell * len(layers) + 1),
                             squeeze=False)
    font = 8 if single else 5
    for r, li in enumerate(layers):
        for c, hi in enumerate(heads):
            ax = axes[r][c]
            im = ax.imshow(att[li, hi], vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 or single:
                ax.set_title(f"head {hi}", fontsize=10)
            if c == 0 or single:
                ax.set_ylabel(f"layer {li}", fontsize=10)
            show_tokens = single or (T <= 24 and (c == 0 or r == len(layers) - 1))
            if show_tokens and (single or c == 0):
                ax.set_yticks(range(T), tokens, fontsize=font)
            if show_tokens and (single or r == len(layers) - 1):
                ax.set_xticks(range(T), tokens, fontsize=font, rotation=90)
    fig.suptitle(f"attention, text {text_index}: {result['texts'][text_index][:80]!r}  (rows: queries, columns: keys)",
                 fontsize=12)
    fig.colorbar(im, ax=axes, shrink=0.6 if single else 0.3)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
