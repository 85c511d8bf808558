#!/usr/bin/env python
"""Max |difference| between minibert and transformers (PyTorch, eager attention) for any local checkpoint.

    python scripts/parity.py CHECKPOINT_DIR [--text "..." ...]

Runs both on the same padded batch and prints one line per output. Needs the test extras
(transformers, torch). Exits 1 when a difference is above the parity tolerance.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from reference import max_diffs, reference  # noqa: E402

TOL = {"logits": 1e-5, "pooler_output": 1e-5, "last_hidden_state": 1e-4, "hidden_states": 1e-4, "attentions": 1e-4}
DEFAULT_TEXTS = ["I've been waiting for a HuggingFace course my whole life.", "I hate this so much!", "Short."]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--text", action="append", help="a text to run (repeatable); default: three seed sentences")
    args = p.parse_args(argv)

    import minibert
    from minibert.auto import is_sequence_classifier

    config = minibert.AutoConfig.from_pretrained(args.checkpoint)
    head = "cls" if is_sequence_classifier(config) else "base"
    tok = minibert.AutoTokenizer.from_pretrained(args.checkpoint)
    enc = tok(args.text or DEFAULT_TEXTS, padding=True, truncation=True, return_tensors="np")
    ref = reference(args.checkpoint, enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"), head=head)
    auto = minibert.AutoModel if head == "base" else minibert.AutoModelForSequenceClassification
    out = auto.from_pretrained(args.checkpoint)(enc, output_hidden_states=True, output_attentions=True)
    diffs = max_diffs(out, ref, enc["attention_mask"])
    print(f"{args.checkpoint}: {type(config).__name__}, {head} model, batch {tuple(enc['input_ids'].shape)}")
    ok = True
    for key, d in diffs.items():
        good = d <= TOL[key]
        ok &= good
        print(f"  {key:<18} max |diff| {d:.3e}   (tolerance {TOL[key]:.0e}) {'ok' if good else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
