#!/usr/bin/env python
"""Max |difference| between minibert and transformers (PyTorch, eager attention) for any local checkpoint.

    python scripts/parity.py CHECKPOINT_DIR [--text "..." ...]

Runs both on the same padded batch and prints one line per output. Any head works: the class is the
one config.json's `architectures` names (a multiple-choice model reads the texts as the choices of one
question). Needs the test extras (transformers, torch). Exits 1 when a difference is above the parity
tolerance.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from reference import TOL, max_diffs, reference  # noqa: E402

DEFAULT_TEXTS = ["I've been waiting for a HuggingFace course my whole life.", "I hate this so much!", "Short."]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--text", action="append", help="a text to run (repeatable); default: three seed sentences")
    args = p.parse_args(argv)

    import numpy as np

    import minibert
    from minibert.auto import FAMILIES, class_for_architecture

    config = minibert.AutoConfig.from_pretrained(args.checkpoint)
    cls = class_for_architecture(config)
    head = next(h for h, c in FAMILIES[config.model_type].items() if c is cls)
    tok = minibert.AutoTokenizer.from_pretrained(args.checkpoint)
    enc = tok(args.text or DEFAULT_TEXTS, padding=True, truncation=True, return_tensors="np")
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    mask = inputs["attention_mask"]
    if head == "multiple-choice":  # the texts are the choices of one question: (1, choices, T)
        inputs = {k: v[None] for k, v in inputs.items()}
    ref = reference(args.checkpoint, inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids"),
                    head=head)
    out = cls.from_pretrained(args.checkpoint, config=config)(inputs, output_hidden_states=True, output_attentions=True)
    for key in ("start_logits", "end_logits") + (("logits",) if np.ndim(ref.get("logits")) == 3 else ()):
        if key in ref:  # per-token logits: compared at real tokens, as hidden states are
            out[key] = np.asarray(out[key])[mask.astype(bool)]
            ref[key] = ref[key][mask.astype(bool)]
    diffs = max_diffs(out, ref, mask)
    print(f"{args.checkpoint}: {cls.__name__}, batch {tuple(inputs['input_ids'].shape)}")
    ok = True
    for key, d in diffs.items():
        good = d <= TOL[key]
        ok &= good
        print(f"  {key:<18} max |diff| {d:.3e}   (tolerance {TOL[key]:.0e}) {'ok' if good else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
