#!/usr/bin/env python
"""How much padding the forwards carry: fixed cuts every `batch_size` rows against `split_sorted`'s cuts.

The SST-2 dev texts, tokenized by the default model's tokenizer, are split into calls of `--call` texts in
the order given (a server's model call holds a few dozen requests of mixed lengths; the whole corpus is one
call), each call sorted by length and cut into forwards. Prints padded tokens over real tokens and the
number of forwards for each way of cutting.

    python scripts/padding.py --batch-size 16 --call 32 1000
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, nargs="+", default=[16, 32])
    p.add_argument("--call", type=int, nargs="+", default=[32, 872], help="texts per call (default 32 and 872)")
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "sst2"))
    args = p.parse_args()
    import minibert
    from bench import read_texts
    from minibert import default_model
    from minibert.pipelines.base import split_sorted

    tok = minibert.AutoTokenizer.from_pretrained(default_model.encoder_dir())
    lengths = np.array([len(ids) for ids in tok(read_texts(args.data))["input_ids"]])
    print(f"{len(lengths)} SST-2 dev texts, {lengths.sum()} tokens")
    print(f"{'call':>6} {'batch':>6}  {'fixed cuts: padded/real, forwards':>34}  {'split_sorted: padded/real, forwards':>36}")
    for call in args.call:
        for batch_size in args.batch_size:
            found = {"fixed": [0, 0], "split": [0, 0]}
            for start in range(0, len(lengths), call):
                sorted_lengths = np.sort(lengths[start:start + call])
                n = len(sorted_lengths)
                for way, cuts in (("fixed", [*range(0, n, batch_size), n]), ("split", split_sorted(sorted_lengths, batch_size))):
                    for a, b in zip(cuts[:-1], cuts[1:]):
                        found[way][0] += (b - a) * sorted_lengths[b - 1]  # each forward padded to its longest row
                        found[way][1] += 1
            (fp, fn), (sp, sn) = found["fixed"], found["split"]
            print(f"{call:>6} {batch_size:>6}  {fp / lengths.sum():>26.3f} {fn:>7}  {sp / lengths.sum():>28.3f} {sn:>7}")


if __name__ == "__main__":
    main()
