#!/usr/bin/env python
"""Peak memory of each Ray worker during a streaming `minibert classify --input` run.

    python scripts/ray_memory.py [--rows 200000] [--workers 2] [--task classify|embed] [--json FILE]

Writes ROWS short texts (the first 8 words of SST-2 train sentences, cycled) to a text file, runs the
command on it in a subprocess (a local Ray, started and shut down by the command), and samples every
model actor's memory from /proc twice a second: its peak resident set (VmHWM) and its resident set at
each quarter of the run. Streaming means a worker holds one batch (1,024 rows) and its model, so the
figures should not grow with ROWS: compare a run with --rows 20000.

RSS includes the pages of Ray's shared-memory object store that a worker has touched (its input
batches), counted again in every process that maps them; the store itself is capped by Ray.
"""
import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def corpus_file(prefix: str, texts: list[str]) -> tuple[str, str]:
    """(a new temp folder, the text file in it holding `texts` one per line): what the commands read.
    The folder is removed when the script exits, a failed run included."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, tmp, True)
    path = os.path.join(tmp, "corpus.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(t + "\n" for t in texts)
    return tmp, path


def command_env() -> dict:
    """The environment the measured commands run in: this repository's minibert first on PYTHONPATH, and
    Ray's memory monitor off (Ray kills workers when the machine's memory is over 95% full, whoever uses
    it; on a shared machine that would measure other people's programs)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
            "RAY_memory_monitor_refresh_ms": "0"}


def short_texts(rows: int) -> list[str]:
    with open(os.path.join(REPO, "data", "sst2", "train.txt"), encoding="utf-8") as f:
        base = [" ".join(line.split()[1:9]) for line in f]
    return [base[i % len(base)] for i in range(rows)]


def proc_status(pid: int) -> dict:
    """VmRSS and VmHWM in MB, or {} when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
    except OSError:
        return {}
    return {k: int(v.split()[0]) / 1024 for k, v in fields.items()}


def descendants(root: int) -> dict[int, str]:
    """{pid: title} of the processes below `root`."""
    parent, title = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title[int(pid)] = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
    found = {}
    for pid in parent:
        p = pid
        while p in parent and p != root:
            p = parent[p]
        if p == root and pid != root:
            found[pid] = title.get(pid, "")
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--task", choices=["classify", "embed"], default="classify")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    tmp, corpus = corpus_file("ray_memory_", short_texts(args.rows))
    env = command_env()
    cmd = [sys.executable, "-m", "minibert", args.task, "--input", corpus, "--output", os.path.join(tmp, "out"),
           "--workers", str(args.workers), "--quiet"]
    started = time.perf_counter()
    log = open(os.path.join(tmp, "stderr.txt"), "w+")  # closed at exit, before the folder is removed
    atexit.register(log.close)
    proc = subprocess.Popen(cmd, env=env, stderr=log, stdout=subprocess.DEVNULL)
    samples = []  # (seconds, {pid: rss_mb}) for the model actors
    peak = {}  # pid -> VmHWM MB, the last value read while it lived
    driver_peak = 0.0
    while proc.poll() is None:
        now = {}
        for pid, title in descendants(proc.pid).items():
            if title.startswith("ray::MapWorker"):
                st = proc_status(pid)
                if st:
                    now[pid] = st["VmRSS"]
                    peak[pid] = max(peak.get(pid, 0), st["VmHWM"])
        driver_peak = max(driver_peak, proc_status(proc.pid).get("VmHWM", 0))
        samples.append((time.perf_counter() - started, now))
        time.sleep(0.5)
    log.seek(0)
    tail = [line.rstrip() for line in log if line.strip()]
    if proc.returncode != 0:
        sys.exit(f"the run failed:\n" + "\n".join(tail[-20:]))
    wall = time.perf_counter() - started

    with_workers = [(t, s) for t, s in samples if s]
    if not with_workers:
        sys.exit("no model worker (ray::MapWorker) was seen during the run: nothing to report")
    quarters = {}
    for q in (0.25, 0.5, 0.75, 1.0):
        t, s = with_workers[min(len(with_workers) - 1, int(q * len(with_workers)))]
        quarters[f"{int(q * 100)}%"] = {str(pid): round(mb) for pid, mb in sorted(s.items())}
    result = {"rows": args.rows, "workers": args.workers, "task": args.task, "wall_s": round(wall, 1),
              "summary": tail[-1], "peak_rss_mb_per_worker": {str(p): round(mb) for p, mb in sorted(peak.items())},
              "rss_mb_at_quarters_of_the_run": quarters, "driver_peak_rss_mb": round(driver_peak)}
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
