"""The server's Prometheus metrics, written in the text exposition format (version 0.0.4).

Counters by route and status, a latency histogram per route, the queue depth, and per model call
the requests, inputs and tokens it batched (histograms, so `_sum / _count` is the mean batch).
"""
from __future__ import annotations

import bisect
import collections

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)

HELP = {
    "minibert_requests_total": ("counter", "HTTP requests answered, by route and status"),
    "minibert_errors_total": ("counter", "HTTP requests answered with an error, by route and error type"),
    "minibert_inputs_total": ("counter", "inputs (texts, pairs, questions) received, by route"),
    "minibert_tokens_total": ("counter", "tokens of the inputs received, by route"),
    "minibert_cancelled_total": ("counter", "queued requests dropped because their client disconnected"),
    "minibert_queue_depth": ("gauge", "requests waiting for the model"),
    "minibert_requests_in_flight": ("gauge", "requests admitted and not yet answered"),
    "minibert_request_duration_seconds": ("histogram", "time from request to response, by route"),
    "minibert_batch_requests": ("histogram", "requests per model call"),
    "minibert_batch_inputs": ("histogram", "inputs per model call"),
    "minibert_batch_tokens": ("histogram", "tokens per model call"),
}


class Histogram:
    def __init__(self, buckets):
        self.buckets, self.counts, self.sum, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for le, n in zip(self.buckets, self.counts):
            running += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        braces = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{braces} {self.sum}", f"{name}_count{braces} {self.count}"]
        return out


class Metrics:
    """Updated from the event loop only (the model thread returns its figures to it), so no locks."""

    def __init__(self):
        self.counters: dict[tuple[str, str], float] = collections.defaultdict(float)
        self.latency: dict[str, Histogram] = {}
        self.batches = {"minibert_batch_requests": Histogram(SIZE_BUCKETS),
                        "minibert_batch_inputs": Histogram(SIZE_BUCKETS),
                        "minibert_batch_tokens": Histogram(TOKEN_BUCKETS)}
        self.queue_depth = 0
        self.in_flight = lambda: 0

    def inc(self, name: str, labels: str = "", by: float = 1) -> None:
        self.counters[(name, labels)] += by

    def observe_request(self, route: str, status: int, error_type: str | None, seconds: float,
                        inputs: int, tokens: int) -> None:
        self.inc("minibert_requests_total", f'route="{route}",status="{status}"')
        if error_type:
            self.inc("minibert_errors_total", f'route="{route}",error_type="{error_type}"')
        if inputs:
            self.inc("minibert_inputs_total", f'route="{route}"', inputs)
        if tokens:
            self.inc("minibert_tokens_total", f'route="{route}"', tokens)
        self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, requests: int, inputs: int, tokens: int) -> None:
        for name, value in zip(self.batches, (requests, inputs, tokens)):
            self.batches[name].observe(value)

    def render(self) -> str:
        by_name = collections.defaultdict(list)
        for (name, labels), value in sorted(self.counters.items()):
            by_name[name].append(f"{name}{{{labels}}} {value:g}" if labels else f"{name} {value:g}")
        by_name["minibert_queue_depth"] = [f"minibert_queue_depth {self.queue_depth}"]
        by_name["minibert_requests_in_flight"] = [f"minibert_requests_in_flight {self.in_flight()}"]
        for route, hist in sorted(self.latency.items()):
            name = "minibert_request_duration_seconds"
            by_name[name] += hist.lines(name, f'route="{route}"')
        for name, hist in self.batches.items():
            by_name[name] = hist.lines(name, "")
        out = []
        for name, (kind, text) in HELP.items():
            out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *by_name.get(name, [])]
        return "\n".join(out) + "\n"
