"""Dynamic batching: concurrent requests queue here and run through the model together.

A request becomes one `Job`: its inputs, its token count and a `key` (the route and the options its
results depend on). The batcher's loop takes the oldest waiting job and every later job with the same
key, up to `max_batch_tokens` tokens and `max_batch_inputs` inputs, and hands their inputs to the
key's function in one call on the model thread; the pipeline inside sorts those rows by length, cuts
them into forwards where the lengths jump, and pads each forward only to its own longest row. Each job
gets back exactly its own slice of the results, in its own order. A job is never split: one request
over a budget runs alone.

While the model is busy the queue fills, so under load batches form with no waiting; when the model
is idle, the first job waits at most `max_wait_ms` for company. `max_concurrent` bounds the requests
admitted at once (queued, tokenizing or running): past it `admit` refuses at once, so memory stays
bounded by that many request bodies. A job whose client has gone is dropped before it runs.
"""
from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable


class Overloaded(Exception):
    """More requests than --max-concurrent-requests are in the server."""


@dataclass(eq=False)
class Job:
    key: tuple  # jobs with equal keys run in one call of `run`
    run: Callable[[list], list]  # every input of a batch -> one result per input, in order
    inputs: list
    tokens: int
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)
    cancelled: bool = False  # the client disconnected: drop the job if it has not run
    started: float | None = None  # when its batch began to run (TEI's queue and inference times)


class Batcher:
    def __init__(self, metrics, max_batch_tokens: int, max_batch_inputs: int, max_wait_ms: float,
                 max_concurrent: int, batching: bool = True):
        self.metrics = metrics
        self.max_batch_tokens, self.max_batch_inputs = max_batch_tokens, max_batch_inputs
        self.max_wait = max_wait_ms / 1000
        self.max_concurrent, self.batching = max_concurrent, batching
        self.queue: collections.deque[Job] = collections.deque()
        self.admitted = 0
        # One model thread: TensorFlow already spreads one forward over every core, and the event loop
        # stays free to parse, tokenize and answer while it runs.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="minibert-model")
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closing = False

    # -- admission -----------------------------------------------------------------------------
    def admit(self) -> None:
        if self.admitted >= self.max_concurrent:
            raise Overloaded(f"more than --max-concurrent-requests={self.max_concurrent} requests at once; retry later")
        self.admitted += 1

    def release(self) -> None:
        self.admitted -= 1

    # -- the queue -----------------------------------------------------------------------------
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Run what is queued, then stop."""
        self._closing = True
        if self._task is not None:
            self._wake.set()
            await self._task
        self.executor.shutdown(wait=True)

    def submit(self, key: tuple, run: Callable[[list], list], inputs: list, tokens: int) -> Job:
        if self._task is None:  # a host that runs no ASGI lifespan (Ray Serve may not): start on first use
            self.start()
        job = Job(key, run, inputs, tokens, asyncio.get_running_loop().create_future())
        self.queue.append(job)
        self.metrics.queue_depth = len(self.queue)
        self._wake.set()
        return job

    def _full(self) -> bool:
        return (sum(len(j.inputs) for j in self.queue) >= self.max_batch_inputs
                or sum(j.tokens for j in self.queue) >= self.max_batch_tokens)

    def _take(self) -> list[Job]:
        """The oldest live job and the later ones with its key that fit the budgets, removed from the queue."""
        while self.queue and self.queue[0].cancelled:
            self.queue.popleft()
            self.metrics.inc("minibert_cancelled_total")
        if not self.queue:
            return []
        first = self.queue.popleft()
        batch, inputs, tokens, kept = [first], len(first.inputs), first.tokens, collections.deque()
        while self.batching and self.queue:
            job = self.queue.popleft()
            if job.cancelled:
                self.metrics.inc("minibert_cancelled_total")
            elif (job.key == first.key and inputs + len(job.inputs) <= self.max_batch_inputs
                  and tokens + job.tokens <= self.max_batch_tokens):
                batch.append(job)
                inputs, tokens = inputs + len(job.inputs), tokens + job.tokens
            else:
                kept.append(job)
        kept.extend(self.queue)  # any jobs not looked at (batching off) keep their place
        self.queue = kept
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            # The model is idle: let the first job wait a moment for others to share its forward.
            deadline = self.queue[0].arrived + self.max_wait
            while self.batching and not self._closing and not self._full() and (left := deadline - time.monotonic()) > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except asyncio.TimeoutError:
                    break
            batch = self._take()
            self.metrics.queue_depth = len(self.queue)
            if not batch:
                continue
            now = time.monotonic()
            for job in batch:
                job.started = now
            outcomes = await loop.run_in_executor(self.executor, self._run, batch)
            self.metrics.observe_batch(len(batch), sum(len(j.inputs) for j in batch), sum(j.tokens for j in batch))
            for job, (ok, value) in zip(batch, outcomes):
                if not job.future.done():
                    job.future.set_result(value) if ok else job.future.set_exception(value)

    @staticmethod
    def _run(batch: list[Job]) -> list[tuple[bool, object]]:
        """On the model thread: one call for the whole batch, then each job's slice of the results."""
        inputs = [x for job in batch for x in job.inputs]
        try:
            results = batch[0].run(inputs)
        except Exception:  # noqa: BLE001 - one job's failure must not fail the others: run each alone
            outcomes = []
            for job in batch:
                try:
                    outcomes.append((True, job.run(job.inputs)))
                except Exception as e:  # noqa: BLE001 - handed to that job's request
                    outcomes.append((False, e))
            return outcomes
        outcomes, start = [], 0
        for job in batch:
            outcomes.append((True, results[start:start + len(job.inputs)]))
            start += len(job.inputs)
        return outcomes
