"""Throughput and latency of `minibert serve` against the one-process pipeline and against itself with
batching off.

For each server (dynamic batching on, then --no-batching) and each number of concurrent clients, the
clients send one SST-2 dev text per request to /predict (or /embed with --embed) until --requests
are answered; the script prints texts per second and the p50/p99 latency. The baseline is the
pipeline's own corpus throughput on the same texts in one process (batches of 64, sorted by length),
measured while no server runs. Clients are asyncio connections in this process, on the same machine as
the server: on a small machine they take some of its CPU, so the figures are a floor.

    python scripts/serve_bench.py                 # the default sentiment model
    python scripts/serve_bench.py --embed         # the MiniLM embedder, /embed
    python scripts/serve_bench.py --clients 1 8 64 --requests 2000
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dev_texts(n: int) -> list[str]:
    with open(os.path.join(REPO, "data", "sst2", "dev.txt"), encoding="utf-8") as f:
        texts = [line.split(" ", 1)[1].strip() for line in f]
    return (texts * (n // len(texts) + 1))[:n]


def pipeline_throughput(task: str, texts: list[str]) -> float:
    """Texts per second of one pipeline call over the corpus, in a fresh process (as a user runs it)."""
    code = f"""
import time, json, sys
from minibert._tensorflow import load_tensorflow_quietly
load_tensorflow_quietly()
from minibert.pipelines import pipeline
texts = json.load(sys.stdin)
pipe = pipeline({task!r})
options = {{"pooling": "mean", "normalize": True}} if {task!r} == "feature-extraction" else {{}}
pipe(texts[:256], **options)  # warm: trace the forwards
start = time.perf_counter()
pipe(texts, **options)
print(len(texts) / (time.perf_counter() - start))
"""
    import json

    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts), capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": REPO}, check=True)
    return float(out.stdout.strip().splitlines()[-1])


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "minibert", "serve", "--port", "0", "--log-level", "warning",
                                      *args], env={**os.environ, "PYTHONPATH": REPO},
                                     stderr=subprocess.PIPE, text=True)
        self.url, ready, self.lines = None, threading.Event(), []

        def read():
            for line in self.proc.stderr:
                self.lines.append(line)
                if line.startswith("minibert serve:"):
                    self.url = line.split(" on ", 1)[1].split()[0]
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(900)
        if self.url is None:
            raise SystemExit("the server did not start:\n" + "".join(self.lines[-20:]))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(120)


async def load(url: str, route: str, texts: list[str], clients: int) -> tuple[float, list[float]]:
    """(texts per second, latencies in seconds) for `clients` concurrent clients sending every text once.

    Each client is one keep-alive HTTP/1.1 connection written with asyncio's streams: a general client
    (httpx's async pool) took more CPU per request than the server at 64 clients on 2 cores, and
    measured itself."""
    import json
    import re

    host, port = url.removeprefix("http://").rsplit(":", 1)
    queue, latencies = list(reversed(texts)), []

    async def worker():
        reader, writer = await asyncio.open_connection(host, int(port))
        while queue:
            body = json.dumps({"inputs": queue.pop(), "truncate": True}).encode()
            start = time.perf_counter()
            writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (route.encode(), host.encode(), len(body), body))
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"the server answered {head.splitlines()[0].decode()}")
            await reader.readexactly(int(re.search(rb"content-length: *(\d+)", head, re.I).group(1)))
            latencies.append(time.perf_counter() - start)
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return len(texts) / (time.perf_counter() - start), latencies


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embed", action="store_true", help="the MiniLM embedder on /embed (default: sentiment on /predict)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--requests", type=int, default=1000, help="requests per measurement (default 1000)")
    p.add_argument("--ray", type=int, metavar="N", help="also measure `--ray --replicas N` (Ray Serve, one thread each)")
    p.add_argument("--only", choices=["batching", "no batching", "ray"], nargs="+", help="measure only these servers")
    args = p.parse_args()
    task, route = ("feature-extraction", "/embed") if args.embed else ("text-classification", "/predict")
    texts = dev_texts(args.requests)
    from bench import cpu_name  # this script's folder is on sys.path
    from minibert import cpu
    from minibert.engine import engine_name

    print(f"CPU: {cpu_name()} ({cpu.isa()}), {os.cpu_count()} cores; engine {engine_name()} (server and pipeline); "
          f"{task}, {len(texts)} SST-2 dev texts")
    base = pipeline_throughput(task, texts)  # while no server runs
    print(f"one-process pipeline, corpus at once: {base:.0f} texts/s")
    print("server        clients  texts/s  of pipeline  p50 ms  p99 ms")
    servers = [("batching", []), ("no batching", ["--no-batching"])]
    if args.ray:
        servers.append((f"ray x{args.ray}", ["--ray", "--replicas", str(args.ray), "--port", str(free_port())]))
    for name, extra in servers:
        if args.only and name.split(" x")[0] not in args.only:
            continue
        server = Server("--task", task, *extra)
        try:
            asyncio.run(load(server.url, route, texts[:64], 8))  # warm the connection pool and the shapes
            for clients in args.clients:
                rate, lat = asyncio.run(load(server.url, route, texts, clients))
                p50, p99 = np.percentile(lat, [50, 99]) * 1000
                print(f"{name:<13} {clients:>7}  {rate:>7.0f}  {rate / base:>10.0%}  {p50:>6.1f}  {p99:>6.1f}", flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
