#!/usr/bin/env python
"""Max |difference| between minibert and transformers (PyTorch, eager attention) for any local checkpoint.

    python scripts/parity.py CHECKPOINT_DIR [--text "..." ...]
    python scripts/parity.py --all [--base] [--family mpnet ...]    # every family x head, on checkpoints transformers writes
    python scripts/parity.py ... --engine litert   # also the outputs the compiled engine computes

Runs both on the same padded batch and prints one line per output. Any head works: the class is the
one config.json's `architectures` names (a multiple-choice model reads the texts as the choices of one
question). Needs the test extras (transformers, torch). Exits 1 when a difference is above the parity
tolerance.

Hidden states and attention maps always come from the Keras layers (the engine does not compute them). With
`--engine litert` the outputs the engine does compute (logits, pooled and last hidden states) are run again
through the LiteRT engine (converted on first use and cached, as pipelines do) and reported as `engine:<name>`.
"""
import argparse
import os
import sys
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from family_configs import BASE, SMALL_PARITY  # noqa: E402  (--all's configs; --base: BASE)
from reference import TOL, at_real_tokens, max_diffs, reference  # noqa: E402

DEFAULT_TEXTS = ["I've been waiting for a HuggingFace course my whole life.", "I hate this so much!", "Short."]


def compare(folder, inputs: dict, engine: str = "keras") -> tuple[str, dict]:
    """(minibert's class, max |diff| per output) for the class config.json names, on `inputs` (numpy, (B, T));
    with engine="litert", also the engine's outputs, keyed `engine:<output>`."""
    import numpy as np

    import minibert
    from minibert.auto import FAMILIES, class_for_architecture

    config = minibert.AutoConfig.from_pretrained(folder)
    cls = class_for_architecture(config)
    head = next(h for h, c in FAMILIES[config.model_type].items() if c is cls)
    mask = inputs["attention_mask"]
    if head == "multiple-choice":  # the rows are the choices of one question: (1, choices, T)
        inputs = {k: v[None] for k, v in inputs.items()}
    ref = reference(folder, inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids"), head=head)
    model = cls.from_pretrained(folder, config=config, engine=engine)
    out = model(inputs, output_hidden_states=True, output_attentions=True)  # the Keras layers, whatever the engine
    per_token = [key for key in ("start_logits", "end_logits", "logits")
                 if key in ref and np.ndim(ref[key]) == np.ndim(mask) + (key == "logits" and head != "pretraining")]
    ref = at_real_tokens(ref, per_token, mask)
    diffs = max_diffs(SimpleNamespace(**at_real_tokens(out, per_token, mask)), ref, mask)
    if engine == "litert":
        from minibert.engine import LiteRTForward

        fast = model(inputs)  # no hidden states or attentions asked: the engine's forward
        if not isinstance(model.compiled_forward(), LiteRTForward):
            raise SystemExit("the litert engine did not run here (see the warning above)")
        engine_diffs = max_diffs(SimpleNamespace(**at_real_tokens(fast, per_token, mask)), ref, mask)
        diffs.update({f"engine:{key}": d for key, d in engine_diffs.items()})
    return cls.__name__, diffs


def report(name: str, diffs: dict) -> bool:
    print(name)
    ok = True
    for key, d in diffs.items():
        tol = TOL[key.removeprefix("engine:")]
        good = d <= tol
        ok &= good
        print(f"  {key:<24} max |diff| {d:.3e}   (tolerance {tol:.0e}) {'ok' if good else 'FAIL'}")
    return ok


def run_all(base: bool, only=None, engine: str = "keras") -> bool:
    """Every family x head (or those of the families in `only`) on random checkpoints (LayerNorms perturbed),
    padded batches; a markdown table."""
    import tempfile

    import numpy as np

    from minibert.auto import FAMILIES
    from minibert.families import REGISTRY
    from reference import make_checkpoint

    rng = np.random.default_rng(0)
    rows, ok = [], True
    for family, heads in FAMILIES.items():
        if only and family not in only:
            continue
        cfg = {**(BASE[family] if base else SMALL_PARITY[family])}
        from_padding = REGISTRY[family].positions == "from padding"
        pad = cfg.get("pad_token_id", 1 if from_padding else 0)
        vocab = cfg.get("vocab_size", 30522)
        ids = rng.integers(3, min(vocab, 30000), size=(3, 16))
        mask = np.ones_like(ids)
        mask[1, 10:], mask[2, 5:] = 0, 0  # padded on the right
        if from_padding:
            mask[2] = mask[2][::-1]  # and on the left: RoBERTa's positions depend on it
        ids = np.where(mask == 1, ids, pad)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if REGISTRY[family].token_types:
            inputs["token_type_ids"] = (np.arange(16)[None, :] >= 8).astype(int) * mask
        for head in heads:
            with tempfile.TemporaryDirectory() as folder:
                make_checkpoint(folder, family, head, seed=len(rows), **cfg)
                name, diffs = compare(folder, inputs, engine)
            ok &= report(f"{family} {head}: {name}", diffs)
            rows.append((name, diffs))
    keys = ["logits", "start_logits", "end_logits", "pooler_output", "last_hidden_state", "hidden_states", "attentions"]
    keys += [f"engine:{k}" for k in keys[:5] if any(f"engine:{k}" in d for _, d in rows)]
    print(f"\n| class ({'Hub model sizes' if base else 'small configs'}, batch 3 x 16, padded) | "
          + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, diffs in rows:
        print(f"| {name} | " + " | ".join(f"{diffs[k]:.1e}" if k in diffs else "" for k in keys) + " |")
    return ok


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?")
    p.add_argument("--text", action="append", help="a text to run (repeatable); default: three seed sentences")
    p.add_argument("--all", action="store_true", help="every family x head on checkpoints written by transformers")
    p.add_argument("--base", action="store_true", help="with --all: the Hub models' sizes (slower)")
    p.add_argument("--family", action="append", help="with --all: only this model_type (repeatable)")
    p.add_argument("--engine", choices=["keras", "litert"], default="keras",
                   help="litert: also compare the outputs the compiled engine computes (default: the Keras layers only)")
    args = p.parse_args(argv)
    if args.all:
        return 0 if run_all(args.base, args.family, args.engine) else 1
    if not args.checkpoint:
        p.error("give a CHECKPOINT_DIR or --all")

    import minibert

    tok = minibert.AutoTokenizer.from_pretrained(args.checkpoint)
    enc = tok(args.text or DEFAULT_TEXTS, padding=True, truncation=True, return_tensors="np")
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    name, diffs = compare(args.checkpoint, inputs, args.engine)
    return 0 if report(f"{args.checkpoint}: {name}, batch {tuple(inputs['input_ids'].shape)}", diffs) else 1


if __name__ == "__main__":
    sys.exit(main())
