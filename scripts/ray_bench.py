#!/usr/bin/env python
"""Rows/s of `minibert classify` in one process and on Ray Data with 1 and 2 workers, on the same texts.

    python scripts/ray_bench.py [--n 20000] [--task classify|embed] [--workers 1,2] [--threads 1] [--json FILE]

The texts are SST-2 sentences (data/sst2: train, then dev, cycled to reach N), one per line in a text
file that every run reads. Each run is the command a user types, in its own process:

- one process: `minibert classify --file corpus.txt --format jsonl` (TensorFlow's default threads:
  one per core);
- Ray: `minibert classify --input corpus.txt --output DIR --workers W --threads T` (a local Ray started
  and shut down by the command; each actor asks Ray for T CPUs and sets TensorFlow's intra- and
  inter-op threads to T before its first op).

rows/s counts from the command's start to its end, model loading included, for both; for Ray the
start-up of Ray itself (the `ray.init` of a fresh local Ray, from the command's own summary line) is
stated on its own and left out of its rows/s, so the two paths compare on the same work.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

from ray_memory import REPO, command_env, corpus_file  # this folder is on sys.path when a script runs


def corpus(n: int) -> list[str]:
    texts = []
    for name in ("train.txt", "dev.txt"):
        with open(os.path.join(REPO, "data", "sst2", name), encoding="utf-8") as f:
            texts += [line.rstrip("\n").split(" ", 1)[1] for line in f]
    return [texts[i % len(texts)] for i in range(n)]


def timed(cmd, env) -> tuple[float, str]:
    started = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return seconds, p.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="texts (default 20,000)")
    ap.add_argument("--task", choices=["classify", "embed"], default="classify")
    ap.add_argument("--workers", default="1,2", help="Ray worker counts to run (default 1,2)")
    ap.add_argument("--threads", type=int, default=1, help="CPUs (TensorFlow threads) per Ray actor (default 1)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    tmp, path = corpus_file("ray_bench_", corpus(args.n))
    env = command_env()
    minibert = [sys.executable, "-m", "minibert", args.task]
    runs = []

    seconds, _ = timed([*minibert, "--file", path, "--format", "jsonl", "--quiet"]
                       if args.task == "classify" else [*minibert, "--file", path, "--output", os.path.join(tmp, "e.npy"),
                                                        "--quiet"], env)
    runs.append({"run": "one process", "threads": os.cpu_count(), "seconds": round(seconds, 1),
                 "rows_per_s": round(args.n / seconds, 1)})
    for workers in map(int, args.workers.split(",")):
        out = os.path.join(tmp, f"out{workers}")
        seconds, err = timed([*minibert, "--input", path, "--output", out, "--workers", str(workers),
                              "--threads", str(args.threads), "--quiet"], env)
        summary = err.strip().splitlines()[-1]
        found = re.search(r"^minibert: (\d+) rows in .*Ray start-up ([\d.]+) s", summary)
        if not found or int(found.group(1)) != args.n:
            sys.exit(f"unexpected summary: {summary}")
        startup = float(found.group(2))
        runs.append({"run": f"Ray, {workers} worker(s)", "threads": args.threads * workers, "seconds": round(seconds, 1),
                     "ray_startup_s": startup, "rows_per_s": round(args.n / (seconds - startup), 1)})
        shutil.rmtree(out)
    single = runs[0]["rows_per_s"]
    for r in runs:
        r["vs_one_process"] = round(r["rows_per_s"] / single, 3)
    print(f"{args.n} SST-2 texts, minibert {args.task}, {os.cpu_count()} CPUs; rows/s include model loading, "
          f"not Ray's own start-up")
    print(f"{'run':<20}{'threads':>8}{'seconds':>9}{'Ray start-up s':>16}{'rows/s':>9}{'vs one process':>16}")
    for r in runs:
        print(f"{r['run']:<20}{r['threads']:>8}{r['seconds']:>9}{r.get('ray_startup_s', '-'):>16}"
              f"{r['rows_per_s']:>9}{r['vs_one_process']:>16}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": args.n, "task": args.task, "cpus": os.cpu_count(), "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
