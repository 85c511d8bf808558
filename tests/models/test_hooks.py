"""TransformerLens-style hooks and caches (`minibert.interp`) against transformers (PyTorch, eager attention).

Each family's tiny random classifier runs a padded batch; the cache is compared with transformers' hidden
states and attention maps, and with the outputs of the matching PyTorch modules read by torch forward hooks.
A head ablated through `hook_z` is compared with the same ablation done in PyTorch by a forward pre-hook on
the attention output projection.
"""
import numpy as np
import pytest

import minibert
from minibert import interp
from reference import make_checkpoint, reference, reference_class

TINY = dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2)
ROBERTA_HUB = dict(layer_norm_eps=1e-5, type_vocab_size=1, pad_token_id=1, max_position_embeddings=42)
CONFIGS = {
    "bert": dict(TINY, hidden_act="gelu_new"),
    "distilbert": dict(dim=32, n_heads=4, hidden_dim=37, n_layers=2),
    "roberta": dict(TINY, **ROBERTA_HUB),
    "xlm-roberta": dict(hidden_size=24, num_attention_heads=2, intermediate_size=30, num_hidden_layers=2, **ROBERTA_HUB),
    "camembert": dict(hidden_size=24, num_attention_heads=3, intermediate_size=30, num_hidden_layers=2, **ROBERTA_HUB),
    "data2vec-text": dict(TINY, **ROBERTA_HUB),
    "electra": dict(TINY, embedding_size=16),
    "mpnet": dict(TINY, max_position_embeddings=42),
    # deberta-v3's attention (relative positions only, c2p and p2c, shared keys); 4 buckets so 8 tokens reach the log ones
    "deberta-v2": dict(TINY, relative_attention=True, share_att_key=True, norm_rel_ebd="layer_norm",
                       position_biased_input=False, pos_att_type=["p2c", "c2p"], type_vocab_size=0,
                       position_buckets=4, layer_norm_eps=1e-7),
}
# xlm-roberta, camembert and data2vec-text run RoBERTa's code under other names, and ELECTRA BERT's blocks:
# the slow suite covers them, the default one each code path once.
SAME_CODE = ("xlm-roberta", "camembert", "data2vec-text", "electra")
FAMILIES = [pytest.param(f, marks=pytest.mark.slow) if f in SAME_CODE else f for f in CONFIGS]
PAD_ONE = ("roberta", "xlm-roberta", "camembert", "data2vec-text", "mpnet")  # pad id 1, positions counted from it

MASK = [[1] * 8, [1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]]
TYPES = [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0]]


def batch(family):
    pad = 1 if family in PAD_ONE else 0
    ids = [[3, 5, 17, 42, 88, 9, 33, 4], [3, 7, 13, 4], [3, 60, 4]]
    ids = [row + [pad] * (8 - len(row)) for row in ids]
    types = TYPES if family in ("bert", "electra") else None
    return ids, types


# The PyTorch module of block i whose output is each hook (None: the module's input is the hook).
BERT_MODULES = {"attn.hook_q": "attention.self.query", "attn.hook_k": "attention.self.key",
                "attn.hook_v": "attention.self.value", "hook_attn_out": "attention.output.dense",
                "mlp.hook_pre": "intermediate.dense", "mlp.hook_post": "intermediate",
                "hook_mlp_out": "output.dense"}
MODULES = {
    "bert": ("encoder.layer", BERT_MODULES),
    "distilbert": ("transformer.layer", {"attn.hook_q": "attention.q_lin", "attn.hook_k": "attention.k_lin",
                                         "attn.hook_v": "attention.v_lin", "hook_attn_out": "attention.out_lin",
                                         "mlp.hook_pre": "ffn.lin1", "mlp.hook_post": "ffn.activation",
                                         "hook_mlp_out": "ffn.lin2"}),
    "deberta-v2": ("encoder.layer", {**BERT_MODULES, "attn.hook_q": "attention.self.query_proj",
                                     "attn.hook_k": "attention.self.key_proj", "attn.hook_v": "attention.self.value_proj"}),
    "mpnet": ("encoder.layer", {"attn.hook_q": "attention.attn.q", "attn.hook_k": "attention.attn.k",
                                "attn.hook_v": "attention.attn.v", "hook_attn_out": "attention.attn.o",
                                "mlp.hook_pre": "intermediate.dense", "mlp.hook_post": "intermediate",
                                "hook_mlp_out": "output.dense"}),
}
ATTN_OUT_DENSE = {"bert": "attention.output.dense", "distilbert": "attention.out_lin", "mpnet": "attention.attn.o"}


def modules_of(family):
    return MODULES.get(family, ("encoder.layer", BERT_MODULES))


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    """family -> (folder, minibert model, transformers model), made once per family."""
    made = {}

    def get(family):
        if family not in made:
            folder = make_checkpoint(tmp_path_factory.mktemp(family), family, "sequence-classification",
                                     vocab_size=120, num_labels=3, initializer_range=0.2,  # a head visibly matters
                                     **{"max_position_embeddings": 40, **CONFIGS[family]})
            model = minibert.AutoModelForSequenceClassification.from_pretrained(folder)
            ref = reference_class(family, "sequence-classification").from_pretrained(
                folder, attn_implementation="eager").eval()
            made[family] = folder, model, ref
        return made[family]

    return get


def torch_inputs(ids, types):
    import torch

    kwargs = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(MASK)}
    if types is not None:
        kwargs["token_type_ids"] = torch.tensor(types)
    return kwargs


def real(x):
    """(B, T, ...) at real tokens only: what padding positions hold is not compared."""
    return np.asarray(x)[np.asarray(MASK).astype(bool)]


def real_rows(pattern):
    """(B, H, Tq, Tk) -> the rows of real queries."""
    return np.asarray(pattern).transpose(0, 2, 1, 3)[np.asarray(MASK).astype(bool)]


@pytest.mark.parametrize("family", FAMILIES)
def test_cache_matches_hidden_states_and_attentions(setups, family):
    folder, model, _ = setups(family)
    ids, types = batch(family)
    ref = reference(folder, ids, MASK, types, head="sequence-classification")
    out, cache = model.run_with_cache(ids, attention_mask=MASK, token_type_ids=types)
    assert np.abs(out.logits.numpy() - ref["logits"]).max() <= 1e-5
    assert np.abs(real(cache["blocks.0.hook_resid_pre"]) - real(ref["hidden_states"][0])).max() <= 1e-4
    for i in range(len(ref["attentions"])):
        assert np.abs(real_rows(cache[f"blocks.{i}.attn.hook_pattern"]) - real_rows(ref["attentions"][i])).max() <= 1e-4
        assert np.abs(real(cache[f"blocks.{i}.hook_resid_post"]) - real(ref["hidden_states"][i + 1])).max() <= 1e-4
        assert np.array_equal(cache[f"blocks.{i}.hook_normalized_resid_post"], cache[f"blocks.{i}.hook_resid_post"])
        # the post-LN residual names, as interp's docstring states them
        np.testing.assert_allclose(cache[f"blocks.{i}.ln1.hook_in"],
                                   cache[f"blocks.{i}.hook_resid_pre"] + cache[f"blocks.{i}.hook_attn_out"], atol=1e-5)
        np.testing.assert_allclose(cache[f"blocks.{i}.ln2.hook_in"],
                                   cache[f"blocks.{i}.hook_resid_mid"] + cache[f"blocks.{i}.hook_mlp_out"], atol=1e-5)
        scores = cache[f"blocks.{i}.attn.hook_attn_scores"]
        e = np.exp(scores - scores.max(-1, keepdims=True))
        np.testing.assert_allclose(e / e.sum(-1, keepdims=True), cache[f"blocks.{i}.attn.hook_pattern"], atol=1e-6)
    # the uncached call still gives the same logits (the compiled path)
    assert np.abs(model(ids, attention_mask=MASK, token_type_ids=types).logits.numpy() - out.logits.numpy()).max() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_cache_matches_pytorch_modules(setups, family):
    """q/k/v, the MLP before and after its activation, attn_out and mlp_out: the PyTorch modules' outputs."""
    import torch

    _, model, ref = setups(family)
    ids, types = batch(family)
    stack_path, modules = modules_of(family)
    layers = ref.get_submodule(f"{ref.base_model_prefix}.{stack_path}")
    seen, handles = {}, []
    for i, layer in enumerate(layers):
        for name, path in modules.items():
            def keep(module, args, output, key=f"blocks.{i}.{name}"):
                seen.setdefault(key, output.detach().numpy())  # DeBERTa's shared keys run again on positions
            handles.append(layer.get_submodule(path).register_forward_hook(keep))
    try:
        with torch.no_grad():
            ref(**torch_inputs(ids, types))
    finally:
        for h in handles:
            h.remove()
    _, cache = model.run_with_cache(ids, attention_mask=MASK, token_type_ids=types)
    H = model.config.num_attention_heads
    for key, want in seen.items():
        if ".attn.hook_" in key:  # (B, T, C) -> TransformerLens's (B, T, H, D)
            want = want.reshape(want.shape[0], want.shape[1], H, -1)
        tol = 1e-5 if key.startswith("blocks.0.") and "mlp.hook_post" not in key else 1e-4
        d = np.abs(real(cache[key]) - real(want)).max()
        assert d <= tol, f"{key}: max |diff| {d:.3g} > {tol:g}"


@pytest.mark.parametrize("family", FAMILIES)
def test_result_sums_to_attn_out_and_weight_views(setups, family):
    _, model, _ = setups(family)
    ids, types = batch(family)
    _, cache = model.run_with_cache(ids, attention_mask=MASK, token_type_ids=types)
    W_Q, W_K, W_V, W_O = model.W_Q, model.W_K, model.W_V, model.W_O
    b_Q, b_K, b_V, b_O = model.b_Q, model.b_K, model.b_V, model.b_O
    L, H = model.config.num_hidden_layers, model.config.num_attention_heads
    C, D = model.config.hidden_size, model.config.hidden_size // H
    assert W_Q.shape == W_K.shape == W_V.shape == (L, H, C, D) and W_O.shape == (L, H, D, C)
    assert b_Q.shape == b_K.shape == b_V.shape == (L, H, D) and b_O.shape == (L, C)
    for i in range(L):
        result = cache[f"blocks.{i}.attn.hook_result"]  # (B, T, H, C)
        assert result.shape == (3, 8, H, C)
        np.testing.assert_allclose(result.sum(2) + b_O[i], cache[f"blocks.{i}.hook_attn_out"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.einsum("bthd,hdc->bthc", cache[f"blocks.{i}.attn.hook_z"], W_O[i]), result,
                                   atol=1e-5, rtol=0)
        x = cache[f"blocks.{i}.hook_resid_pre"]
        for key, W, b in (("q", W_Q, b_Q), ("k", W_K, b_K), ("v", W_V, b_V)):
            np.testing.assert_allclose(np.einsum("btc,hcd->bthd", x, W[i]) + b[i], cache[f"blocks.{i}.attn.hook_{key}"],
                                       atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["bert", "distilbert", "roberta", "electra", "mpnet", "deberta-v2"])
def test_zeroing_a_heads_z_is_pytorchs_ablation(setups, family):
    import torch

    _, model, ref = setups(family)
    ids, types = batch(family)
    layer, head = 1, 2
    D = model.config.hidden_size // model.config.num_attention_heads
    before = model(ids, attention_mask=MASK, token_type_ids=types).logits.numpy()

    def zero_head(z, name):
        assert name == f"blocks.{layer}.attn.hook_z"
        z = z.numpy().copy()
        z[:, :, head] = 0.0
        return z

    ablated = model.run_with_hooks(ids, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_head)], attention_mask=MASK,
                                   token_type_ids=types).logits.numpy()

    def pre_hook(module, args):
        x = args[0].clone()
        x[..., head * D:(head + 1) * D] = 0.0
        return (x,)

    stack_path, _ = modules_of(family)
    dense = ref.get_submodule(f"{ref.base_model_prefix}.{stack_path}.{layer}.{ATTN_OUT_DENSE.get(family, ATTN_OUT_DENSE['bert'])}")
    handle = dense.register_forward_pre_hook(pre_hook)
    try:
        with torch.no_grad():
            want = ref(**torch_inputs(ids, types)).logits.numpy()
    finally:
        handle.remove()
    assert np.abs(ablated - before).max() > 1e-3  # the head mattered
    assert np.abs(ablated - want).max() <= 1e-5
    after = model(ids, attention_mask=MASK, token_type_ids=types).logits.numpy()
    assert np.abs(after - before).max() <= 1e-6  # the hook is gone


def test_hooked_result_feeds_attn_out(setups):
    """A hook on hook_result changes what follows: zeroing every head leaves only the output bias."""
    _, model, _ = setups("bert")
    ids, types = batch("bert")
    _, cache = model.run_with_cache(ids, names_filter=["blocks.0.hook_attn_out"], attention_mask=MASK,
                                    token_type_ids=types,
                                    fwd_hooks=[("blocks.0.attn.hook_result", lambda r, name: np.zeros(r.shape, np.float32))])
    np.testing.assert_allclose(cache["blocks.0.hook_attn_out"], np.broadcast_to(model.b_O[0], (3, 8, 32)), atol=1e-6)


def test_names_filter_and_hook_names(setups):
    _, model, _ = setups("bert")
    ids, types = batch("bert")
    names = model.hook_names()
    assert names[:4] == ["hook_embed", "hook_token_type_embed", "hook_pos_embed", "hook_full_embed"]
    per_block = ["hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_attn_scores", "attn.hook_pattern",
                 "attn.hook_v", "attn.hook_z", "attn.hook_result", "hook_attn_out", "ln1.hook_in", "hook_resid_mid",
                 "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "ln2.hook_in", "hook_resid_post",
                 "hook_normalized_resid_post"]
    assert names[4:] == [f"blocks.{i}.{n}" for i in range(2) for n in per_block]
    kw = dict(attention_mask=MASK, token_type_ids=types)
    _, full = model.run_with_cache(ids, **kw)
    assert list(full) == names
    chosen = ["blocks.1.attn.hook_pattern", "hook_embed"]
    assert set(model.run_with_cache(ids, names_filter=chosen, **kw)[1]) == set(chosen)
    assert list(model.run_with_cache(ids, names_filter="blocks.0.attn.", **kw)[1]) == \
        [n for n in names if n.startswith("blocks.0.attn.")]
    assert list(model.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_resid_post"), **kw)[1]) == \
        ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert list(model.run_with_cache(ids, names_filter="blocks.1.hook_mlp_out", **kw)[1]) == ["blocks.1.hook_mlp_out"]


def test_bad_names_fail_with_the_closest(setups):
    _, model, _ = setups("bert")
    ids, _ = batch("bert")
    for call in (lambda: model.run_with_cache(ids, names_filter=["blocks.0.attn.hook_patern"]),
                 lambda: model.run_with_hooks(ids, fwd_hooks=[("blocks.0.attn.hook_patern", lambda x, n: x)])):
        with pytest.raises(ValueError) as err:
            call()
        msg = str(err.value)
        assert "\n" not in msg and "'blocks.0.attn.hook_patern'" in msg and "blocks.0.attn.hook_pattern" in msg
    with pytest.raises(ValueError, match="blocks.9."):
        model.run_with_cache(ids, names_filter="blocks.9.")
    with pytest.raises(ValueError, match="must keep"):
        model.run_with_hooks(ids, fwd_hooks=[("hook_embed", lambda x, n: x[:, :1])])


def test_hooks_stay_off_the_compiled_paths(setups):
    """Without a hook context a hook point is the identity (the same object); a hooked call compiles nothing."""
    import tensorflow as tf

    folder, _, _ = setups("distilbert")
    model = minibert.AutoModelForSequenceClassification.from_pretrained(folder)
    x = tf.ones((2, 3))
    assert interp.hook("hook_embed", x) is x and not interp.active()
    ids, _ = batch("distilbert")
    out, cache = model.run_with_cache(ids, attention_mask=MASK)
    model.run_with_hooks(ids, fwd_hooks=[(lambda n: True, lambda x, n: None)], attention_mask=MASK)
    assert not model.__dict__.get("_compiled") and cache and not interp.active()
    plain = model(ids, attention_mask=MASK).logits.numpy()
    assert model.__dict__.get("_compiled")  # the ordinary call took the compiled path
    assert np.abs(plain - out.logits.numpy()).max() <= 1e-5


def test_families_without_hooks_say_so(tmp_path):
    folder = make_checkpoint(tmp_path, "modernbert", "model", vocab_size=120, max_position_embeddings=40,
                             hidden_size=32, num_attention_heads=4, intermediate_size=24, num_hidden_layers=1, local_attention=4,
                             pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)
    model = minibert.AutoModel.from_pretrained(folder)
    with pytest.raises(NotImplementedError, match="no hook points"):
        model.run_with_cache([[3, 4, 5]])
