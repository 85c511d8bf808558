"""TransformerLens-style hook points and activation caches on the Keras path.

    logits, cache = model.run_with_cache(enc, names_filter="blocks.0.attn.")   # {name: numpy array}
    out = model.run_with_hooks(enc, fwd_hooks=[("blocks.1.attn.hook_z", zero_head_3)])
    model.hook_names()                                                         # every name a cache can hold

The family code calls `hook(name, x)` at each hook point, with a name relative to the block it is in
(`LayerStack` adds `blocks.{i}.`). Outside `run_with_cache` / `run_with_hooks` no hook context is set and
`hook` returns `x` itself, so the compiled paths (XLA graphs, LiteRT) trace no hooks at all; hooked calls
never take them (`PreTrainedModel.__call__` runs them eagerly on the Keras layers).

Names and shapes (B batch, T positions, H heads, D head width, C model width):
- `hook_embed`, `hook_pos_embed`, `hook_token_type_embed` (B, T, C; where the family has the table);
  `hook_full_embed`: the embeddings' output after their LayerNorm (and dropout), what block 0 reads
  (ELECTRA: before `embeddings_project`, so `embedding_size` wide; `blocks.0.hook_resid_pre` is after it).
- per block: `attn.hook_q/k/v` (B, T, H, D); `attn.hook_attn_scores` (B, H, T, T): scaled, plus the
  padding mask (and MPNet's position bias), before the softmax; `attn.hook_pattern` (B, H, T, T) after it;
  `attn.hook_z` (B, T, H, D): the heads' weighted values before the output projection; `attn.hook_result`
  (B, T, H, C): each head through its slice of the output projection, without the bias (computed only
  when asked for); `hook_attn_out` (B, T, C): the output projection with its bias; `mlp.hook_pre` /
  `mlp.hook_post` (B, T, intermediate): the first linear before / after its activation; `hook_mlp_out`.

Families with hook points: bert, distilbert, roberta, xlm-roberta, camembert, data2vec-text, electra, mpnet and
deberta-v2 (whose `attn.hook_attn_scores` hold every term, c2p and p2c included, scaled and masked; with the
xlarge models' `encoder.conv`, block 0's `hook_normalized_resid_post` is after the conv and is
`hidden_states[1]`). ModernBERT (pre-LN, rotary) has none yet: its hook methods raise NotImplementedError.

The residual names in a post-LN block (every family above): the residual stream
is the normalised one, so that `hook_resid_post` is transformers' `hidden_states[i + 1]`:
- `hook_resid_pre` = the block's input (`hidden_states[i]`);
- `ln1.hook_in` = resid_pre + attn_out, `hook_resid_mid` = LayerNorm_attn(ln1.hook_in): what the MLP reads
  and adds to;
- `ln2.hook_in` = resid_mid + mlp_out, `hook_resid_post` = LayerNorm_out(ln2.hook_in);
- `hook_normalized_resid_post` is a second hook point on that same tensor, right after `hook_resid_post`
  (TransformerLens's post-LN block output). TransformerLens's own `hook_resid_mid` / `hook_resid_post`
  are the un-normalised sums, here `ln1.hook_in` / `ln2.hook_in`.
"""
from __future__ import annotations

import contextlib
import contextvars
import difflib
from collections.abc import Callable

import numpy as np

_CONTEXT = contextvars.ContextVar("minibert_hooks", default=None)


def active() -> bool:
    return _CONTEXT.get() is not None


def hook(name: str, x, broadcast_like=None):
    """The hook point `name` (relative to the current block): `x`, or what the active hooks make of it.

    `broadcast_like`: a tensor whose shape a hooked `x` takes first (BERT's (T, C) position rows -> (B, T, C)).
    """
    ctx = _CONTEXT.get()
    if ctx is None:
        return x
    return ctx.apply(ctx.full(name), x, broadcast_like)


def wants(name: str) -> bool:
    """Whether the active context reads or hooks `name`: for hook points that cost work of their own."""
    ctx = _CONTEXT.get()
    return ctx is not None and ctx.selects(ctx.full(name))


def hooked(name: str) -> bool:
    """Whether a forward hook may replace `name`, so the code after it must use the replacement."""
    ctx = _CONTEXT.get()
    return ctx is not None and ctx.replaces(ctx.full(name))


@contextlib.contextmanager
def hook_block(i: int):
    """Names inside are `blocks.{i}.…`; a no-op without a hook context."""
    ctx = _CONTEXT.get()
    if ctx is None:
        yield
        return
    outer, ctx.prefix = ctx.prefix, f"blocks.{i}."
    try:
        yield
    finally:
        ctx.prefix = outer


def attention_output(dense, context, num_heads: int):
    """The attention output projection `dense` on the heads' values (B, T, C), with `attn.hook_result`
    (computed only when asked for). With a forward hook on hook_result the output is the sum of the hooked
    per-head results plus the bias, as TransformerLens computes it; else `dense` runs as it always does."""
    if not wants("attn.hook_result"):
        return dense(context)
    import tensorflow as tf

    B, T, C = tf.shape(context)[0], tf.shape(context)[1], context.shape[-1]
    H, D = num_heads, C // num_heads
    z = tf.reshape(context, (B, T, H, D))  # (B, T, C) -> (B, T, H, D)
    W = tf.reshape(dense.kernel, (H, D, dense.units))  # (C, C_out) -> (H, D, C_out): head h's rows
    result = hook("attn.hook_result", tf.einsum("bthd,hdc->bthc", z, W))  # (B, T, H, C_out)
    if not hooked("attn.hook_result"):
        return dense(context)
    return tf.reduce_sum(result, axis=2) + (dense.bias if dense.bias is not None else 0.0)  # (B, T, C_out)


def linear_with_activation(dense, x, pre: str = "mlp.hook_pre", post: str = "mlp.hook_post"):
    """A `Linear` with a fused activation, split at the hook points `pre` (before it) and `post` (after)."""
    if _CONTEXT.get() is None:
        return dense(x)
    y = hook(pre, dense(x, activate=False))
    return hook(post, dense.apply_activation(y))


# -- the context ----------------------------------------------------------------------------------------------
NameFilter = None | str | list | tuple | set | Callable[[str], bool]


class HookContext:
    """What one hooked call does: which names it caches, which forward hooks it runs."""

    def __init__(self, cache_filter=None, fwd_hooks=(), record: bool = False):
        self.prefix = ""
        self.cache_filter = cache_filter  # None: cache nothing; else a predicate
        self.fwd_hooks = list(fwd_hooks)  # [(predicate, fn)]
        self.record = record  # listing names: every optional hook point is taken
        self.cache: dict[str, np.ndarray] = {}
        self.seen: list[str] = []

    def full(self, name: str) -> str:
        return self.prefix + name

    def replaces(self, name: str) -> bool:
        return any(match(name) for match, _ in self.fwd_hooks)

    def selects(self, name: str) -> bool:
        if self.record:
            if name not in self.seen:
                self.seen.append(name)
            return True
        return (self.cache_filter is not None and self.cache_filter(name)) or self.replaces(name)

    def apply(self, name: str, x, broadcast_like=None):
        if not self.selects(name):
            return x
        import tensorflow as tf

        if broadcast_like is not None:
            x = tf.broadcast_to(x, tf.concat([tf.shape(broadcast_like)[:-1], tf.shape(x)[-1:]], 0))
        for match, fn in self.fwd_hooks:
            if match(name):
                new = fn(x, name)
                if new is not None:
                    new = tf.convert_to_tensor(new, dtype=x.dtype)
                    if tuple(new.shape) != tuple(x.shape):
                        raise ValueError(f"the hook on {name} returned shape {tuple(new.shape)}; "
                                         f"it must keep {tuple(x.shape)}")
                    x = new
        if self.cache_filter is not None and self.cache_filter(name):
            self.cache[name] = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
        return x


@contextlib.contextmanager
def hook_context(ctx: HookContext):
    token = _CONTEXT.set(ctx)
    try:
        yield ctx
    finally:
        _CONTEXT.reset(token)


def name_predicate(selector, names: list[str], what: str) -> Callable[[str], bool]:
    """A list of names, a prefix string or a predicate -> a predicate; unknown names and prefixes fail."""
    if callable(selector):
        return selector
    if isinstance(selector, str):
        if selector in names:
            return lambda n: n == selector
        if not any(n.startswith(selector) for n in names):
            raise ValueError(f"{what} {selector!r} is neither a hook name nor a prefix of one{_closest(selector, names)}")
        return lambda n: n.startswith(selector)
    if isinstance(selector, (list, tuple, set, frozenset)):
        chosen = set(selector)
        for n in chosen:
            if not isinstance(n, str) or n not in names:
                raise ValueError(f"{what}: no hook named {n!r}{_closest(str(n), names)}")
        return chosen.__contains__
    raise TypeError(f"{what} must be a list of hook names, a prefix string or a predicate, got {type(selector).__name__}")


def _closest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    return f"; closest: {', '.join(close)}" if close else "; see model.hook_names()"


# -- the model-level API (PreTrainedModel delegates here) ----------------------------------------------------
def hook_names(model) -> list[str]:
    """Every hook name of `model`, in forward order: found once by running a 2-token input with every hook
    point taken, so the list is what the code reaches and never drifts from it."""
    names = model.__dict__.get("_hook_names")
    if names is None:
        if _blocks(model) is None:
            raise NotImplementedError(f"{type(model).__name__} has no hook points yet "
                                      "(the BERT-like families, MPNet and DeBERTa-v2 do)")
        ctx = HookContext(record=True)
        ids = np.zeros((1, 1, 2) if model.takes_choices else (1, 2), np.int32)  # multiple choice: (B, N, T)
        with hook_context(ctx):
            model(ids, attention_mask=np.ones_like(ids))
        names = model.__dict__["_hook_names"] = tuple(ctx.seen)
    return list(names)


def run_with_cache(model, inputs, names_filter: NameFilter = None, fwd_hooks=(), **call_kwargs):
    names = hook_names(model)
    keep = (lambda n: True) if names_filter is None else name_predicate(names_filter, names, "names_filter")
    with hook_context(HookContext(cache_filter=keep, fwd_hooks=_hooks(fwd_hooks, names))) as ctx:
        out = model(inputs, **call_kwargs)
    return out, ctx.cache


def run_with_hooks(model, inputs, fwd_hooks=(), **call_kwargs):
    with hook_context(HookContext(fwd_hooks=_hooks(fwd_hooks, hook_names(model)))):
        return model(inputs, **call_kwargs)


def _hooks(fwd_hooks, names: list[str]) -> list:
    """[(name or predicate, fn)] -> [(predicate, fn)]; a name the model lacks fails here, before any work."""
    hooks = []
    for item in fwd_hooks:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and callable(item[1])):
            raise TypeError(f"fwd_hooks holds (name or predicate, fn) pairs, got {item!r}")
        target, fn = item
        if isinstance(target, str):
            if target not in names:
                raise ValueError(f"fwd_hooks: no hook named {target!r}{_closest(target, names)}")
            hooks.append(((lambda n, t=target: n == t), fn))
        elif callable(target):
            hooks.append((target, fn))
        else:
            raise TypeError(f"a hook target is a name or a predicate, got {target!r}")
    return hooks


# -- per-head weights ------------------------------------------------------------------------------------------
def attention_weights(model) -> dict[str, np.ndarray]:
    """TransformerLens's W_Q, W_K, W_V [layer, head, d_model, d_head], W_O [layer, head, d_head, d_model],
    b_Q, b_K, b_V [layer, head, d_head] and b_O [layer, d_model], as numpy copies."""
    blocks = _blocks(model)
    if blocks is None:
        raise NotImplementedError(f"{type(model).__name__} has no per-head weight views")
    H = model.config.num_attention_heads
    out = {k: [] for k in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O")}
    for blk in blocks:
        q, k, v, o = blk.attention_linears()
        for key, lin in (("Q", q), ("K", k), ("V", v)):
            W = lin.kernel.numpy()  # (C, H * D): column block h is head h
            C = W.shape[0]
            out["W_" + key].append(W.reshape(C, H, -1).transpose(1, 0, 2))  # (C, H, D) -> (H, C, D)
            b = lin.bias.numpy() if lin.bias is not None else np.zeros(W.shape[1], W.dtype)
            out["b_" + key].append(b.reshape(H, -1))  # (H * D,) -> (H, D)
        Wo = o.kernel.numpy()  # (H * D, C): row block h is head h
        out["W_O"].append(Wo.reshape(H, -1, Wo.shape[1]))  # (H, D, C)
        out["b_O"].append(o.bias.numpy() if o.bias is not None else np.zeros(Wo.shape[1], Wo.dtype))
    return {k: np.stack(v) for k, v in out.items()}


def _blocks(model):
    """The encoder's blocks, where they have hook points (they then name their attention `Linear`s), else None."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        blocks = getattr(layer, "layer", None)
        if isinstance(blocks, (list, tuple)) and blocks and hasattr(blocks[0], "attention_linears"):
            return list(blocks)
    return None
