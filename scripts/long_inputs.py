"""Peak memory and time of one ModernBERT-base-shaped forward on a long input: minibert's banded
sliding-window layers and chunked global layers against the whole (T x T) masked attention that
transformers' eager path computes (the same model with both thresholds raised past the length).

    python scripts/long_inputs.py                      # 4096 tokens both ways, 8192 banded only
    python scripts/long_inputs.py --lengths 8192 --whole 8192

Each measurement runs in a fresh process: random weights (22 layers x 768, window 128, global every 3rd
layer), one row of T tokens, traced once on 256 tokens, then timed; the peak is the largest resident size
seen during the call (sampled every 5 ms) less the size before it (weights and graph included there).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(T: int, whole: bool) -> dict:
    import numpy as np

    sys.path.insert(0, HERE)
    from bench import PeakRSS, rss_mb

    import minibert
    from minibert.models import modernbert

    if whole:  # every layer takes the (T x T) path, as transformers' eager attention
        modernbert.GLOBAL_QUERY_CHUNK = modernbert.LOCAL_WHOLE_UP_TO = 10**9
    model = minibert.ModernBertModel(minibert.ModernBertConfig())
    model.set_engine("keras")  # the banded attention measured here is the Keras layers', on every CPU kind
    ids = np.random.default_rng(0).integers(5, 50000, size=(1, T))
    model(ids[:, :256])  # traces the graph (open shapes: the same graph then runs every length)
    before = rss_mb()
    with PeakRSS() as peak:
        t = time.perf_counter()
        out = model(ids).last_hidden_state.numpy()
        seconds = time.perf_counter() - t
    assert np.isfinite(out).all()
    return {"tokens": T, "attention": "whole" if whole else "banded", "peak_mb": round(peak.peak - before),
            "seconds": round(seconds, 2)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192], help="banded runs (tokens)")
    p.add_argument("--whole", type=int, nargs="*", default=[4096], help="whole-attention runs (tokens)")
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), args.worker[1] == "whole")))
        return 0
    runs = [(T, "banded") for T in args.lengths] + [(T, "whole") for T in args.whole]
    print("| tokens | attention | peak memory over the model (MB) | seconds |\n|---|---|---|---|")
    for T, kind in sorted(runs):
        r = subprocess.run([sys.executable, __file__, "--worker", str(T), kind], capture_output=True, text=True)
        if r.returncode:
            print(f"| {T} | {kind} | failed: {(r.stderr.strip().splitlines() or ['?'])[-1]} | |", flush=True)
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"| {d['tokens']} | {d['attention']} | {d['peak_mb']} | {d['seconds']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
