"""An asyncio dynamic batcher that loses nothing: every request is answered, failed or rejected.

Single requests (one row each) are collected until ``max_batch_size`` are waiting or the oldest has
waited ``timeout`` seconds, stacked, padded to a fixed bucket (so the model compiles once per bucket,
never per queue length) and run in a worker thread; each caller gets its own row back.

What the guide's version gets wrong, and this one does not:

* its ``processing`` flag is set inside the task it guards, so a model error leaves it set with the
  batch's futures unresolved: those callers, and every later one, wait forever. Here an error fails that
  batch's futures only and the batcher keeps serving;
* it stacks whatever is queued, so every new queue length compiles a new program;
* a cancelled caller's future is skipped, not written to (``InvalidStateError``);
* ``close()`` either drains the queue or rejects what is pending with :class:`BatcherClosed`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from .batching import bucket_for, pad_batch, take_rows

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


class BatcherClosed(RuntimeError):
    """The batcher was closed: the request was not (or will not be) run."""


@dataclass
class BatcherStats:
    """What the batcher did: batches run, rows, failures, and per-request latencies."""

    batches: int = 0
    rows: int = 0
    failed_batches: int = 0
    padded_rows: int = 0
    latencies: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class _Request:
    row: Any
    future: asyncio.Future[Any]
    arrived: float


class DynamicBatcher:
    """Batches single requests: ``async with DynamicBatcher(fn) as b: row = await b.submit(x)``.

    ``fn`` takes a batch (rows stacked on axis 0) and returns a batch; ``buckets`` are the batch sizes it
    is ever called with (default: powers of two up to ``max_batch_size``).
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        max_batch_size: int = 32,
        timeout: float = 0.005,
        buckets: Sequence[int] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be positive, got {max_batch_size}")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.timeout = timeout
        self.buckets = tuple(sorted(set(buckets))) if buckets else _powers_of_two(max_batch_size)
        if self.buckets[-1] < max_batch_size:
            raise ValueError(
                f"the largest bucket {self.buckets[-1]} is below max_batch_size {max_batch_size}"
            )
        self.stats = BatcherStats()
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._closing = False

    async def __aenter__(self) -> DynamicBatcher:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(drain=True)

    def start(self) -> None:
        """Start the worker task (on the running event loop)."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._serve())

    async def warm_up(self, row: Any) -> None:
        """Run every bucket once on copies of ``row``: compiles happen here, not in a caller's wait."""

        def compile_all() -> None:
            for bucket in self.buckets:
                batch = jax.tree_util.tree_map(lambda leaf, n=bucket: np.stack([np.asarray(leaf)] * n), row)
                jax.block_until_ready(self.fn(batch))  # type: ignore[no-untyped-call]

        await asyncio.get_running_loop().run_in_executor(None, compile_all)

    async def submit(self, row: Any) -> Any:
        """Queue one request (one row, no batch axis) and wait for its own row of the result."""
        if self._closing or self._worker is None:
            raise BatcherClosed("the batcher is closed" if self._closing else "the batcher was not started")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(row, future, time.perf_counter()))
        return await future

    async def close(self, *, drain: bool = True) -> None:
        """Stop accepting requests; run what is queued (``drain``) or reject it with BatcherClosed."""
        self._closing = True
        if not drain:
            while not self._queue.empty():
                request = self._queue.get_nowait()
                if not request.future.done():
                    request.future.set_exception(BatcherClosed("the batcher closed before this request ran"))
        if self._worker is not None:
            # The worker stops once closing is set and the queue is empty; wake it if it is waiting.
            self._queue.put_nowait(_WAKE_UP)
            await self._worker
            self._worker = None

    async def _serve(self) -> None:
        while not (self._closing and self._queue.empty()):
            batch = await self._collect()
            if batch:
                await self._run(batch)

    async def _collect(self) -> list[_Request]:
        """The next batch: the first live request, then more until full or timed out."""
        first = await self._queue.get()
        if first is _WAKE_UP:
            return []
        batch = [first]
        deadline = first.arrived + self.timeout
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            try:
                request = (
                    self._queue.get_nowait()
                    if remaining <= 0
                    else await asyncio.wait_for(self._queue.get(), remaining)
                )
            except (TimeoutError, asyncio.QueueEmpty):
                break
            if request is _WAKE_UP:
                break  # closing: the loop in _serve decides whether anything is left
            batch.append(request)
        return [r for r in batch if not r.future.cancelled()]

    async def _run(self, batch: list[_Request]) -> None:

        size = len(batch)
        bucket = bucket_for(size, self.buckets)
        loop = asyncio.get_running_loop()

        def compute() -> Any:
            # Rows are stacked and padded on the host (numpy): one transfer per batch, not per row.
            stacked = jax.tree_util.tree_map(
                lambda *rows: np.stack([np.asarray(row) for row in rows]), *[r.row for r in batch]
            )
            out = self.fn(pad_batch(stacked, bucket, xp=np))
            return jax.device_get(take_rows(out, size))

        try:
            # In a worker thread: the event loop keeps accepting requests while the batch runs.
            outputs = await loop.run_in_executor(None, compute)
        except Exception as error:  # the model failed: this batch's callers hear of it, nobody else
            self.stats.failed_batches += 1
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        now = time.perf_counter()
        self.stats.batches += 1
        self.stats.rows += size
        self.stats.padded_rows += bucket - size
        for index, request in enumerate(batch):
            if not request.future.done():  # cancelled while the batch ran
                request.future.set_result(jax.tree_util.tree_map(lambda leaf, i=index: leaf[i], outputs))
                self.stats.latencies.append(now - request.arrived)


_WAKE_UP: Any = _Request(None, None, 0.0)  # type: ignore[arg-type]


def _powers_of_two(limit: int) -> tuple[int, ...]:
    sizes = [1]
    while sizes[-1] < limit:
        sizes.append(sizes[-1] * 2)
    return tuple(sizes)
