"""Micro-batching: concurrent requests for one model and one operation share a forward pass.

A `MicroBatcher` holds the items waiting for one (model, operation). The first item to arrive
starts a short timer (`wait_s`); the batch goes when the timer fires, when `max_size` items are
waiting, or when nobody else could join, whichever comes first. "Nobody else could join" is
`worth_waiting()` false, asked after the caller has said it `arrived()`: in the service, no other
request in this worker is still on its way to a batcher. So the wait follows this worker's load
rather than a fixed figure: a lone request goes at once, N requests on their way make one batch as
soon as the last arrives (the timer only bounds the wait for one that never comes), and requests
already answered, busy writing their PNGs, make nobody wait (counted as company, they made nearly
every request at concurrency 2 sit out the whole wait for nobody). A longer wait does not pay: past
about 16 images a pass costs the same per image, where two workers' batches already are at 64
connections, and 4 or 8 ms waits raised no throughput (docs/changelog.md, round 4).
While a batch runs in the worker thread, new items queue up and go together as soon as it finishes,
so under load the batches grow by themselves.

Every item has its own future: each caller gets exactly its own result. If a batch fails, its
items are retried one by one, so an error reaches only the caller whose item caused it.
With `enabled=False` every call runs alone (the benchmark's "off").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

from service.runtime import tracing

log = logging.getLogger("digitae.batching")

Item = TypeVar("Item")
Result = TypeVar("Result")

# observe(batch_size, seconds) is told about every forward pass, e.g. to feed metrics
Observer = Callable[[int, float], None]


class MicroBatcher(Generic[Item, Result]):
    def __init__(
        self,
        run: Callable[[list[Item]], list[Result]],
        *,
        executor: Executor,
        max_size: int = 64,
        wait_s: float = 0.002,
        enabled: bool = True,
        observe: Observer | None = None,
        worth_waiting: Callable[[], bool] = lambda: True,
        arrived: Callable[[], None] = lambda: None,
        span_attributes: dict[str, Any] | None = None,
    ) -> None:
        self._run = run
        self._executor = executor
        self.max_size = max_size
        self.wait_s = wait_s
        self.enabled = enabled
        self._observe = observe
        self._worth_waiting = worth_waiting
        self._arrived = arrived
        self.span_attributes = span_attributes or {}  # on the spans of the forward passes (tracing on)
        # each item, its caller's future, and (tracing on) the caller's "wait for batch" span
        self._pending: list[tuple[Item, asyncio.Future[Result], Any]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit_many(self, items: Sequence[Item]) -> list[Result]:
        """Results in the order of `items`; they may travel in several forward passes."""
        self._arrived()  # before `worth_waiting` is asked: the caller is no longer company to wait for
        if not self.enabled:
            results: list[Result] = []
            for start in range(0, len(items), self.max_size):
                results += await self._call(list(items[start : start + self.max_size]))
            return results
        with tracing.span("wait for batch", self.span_attributes) as waiting:
            loop = asyncio.get_running_loop()
            futures = []
            for item in items:
                future: asyncio.Future[Result] = loop.create_future()
                self._pending.append((item, future, waiting))
                futures.append(future)
            self._schedule(loop)
            return list(await asyncio.gather(*futures))

    # -- scheduling (event loop only) -------------------------------------------------------------

    def _schedule(self, loop: asyncio.AbstractEventLoop, *, now: bool = False) -> None:
        if self._running or not self._pending:
            return  # the running batch's completion sends what is waiting
        if now or len(self._pending) >= self.max_size or self.wait_s <= 0 or not self._worth_waiting():
            self._dispatch(loop)
        elif self._timer is None:
            self._timer = loop.call_later(self.wait_s, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if not self._running:
            self._dispatch(loop)

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        live = [entry for entry in self._pending if not entry[1].done()]  # drop cancelled callers
        batch, self._pending = live[: self.max_size], live[self.max_size :]
        if not batch:
            return
        self._running = True
        task = loop.create_task(self._process(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, batch: list[tuple[Item, asyncio.Future[Result], Any]]) -> None:
        try:
            items = [item for item, _, _ in batch]
            served = list({id(span): span for _, _, span in batch if span is not None}.values())
            try:
                outcomes: list[Result | BaseException] = list(await self._call(items, served))
            except Exception as exc:
                outcomes = await self._one_by_one(items) if len(items) > 1 else [exc]
            for (_, future, _), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        except BaseException as exc:  # cancelled at shutdown, or a bug here: never leave a caller hanging
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("batch cancelled"))
            raise
        finally:
            self._running = False
            # what queued up meanwhile has waited long enough: send it at once
            self._schedule(asyncio.get_running_loop(), now=True)

    async def _one_by_one(self, items: list[Item]) -> list[Result | BaseException]:
        outcomes: list[Result | BaseException] = []
        for item in items:
            try:
                outcomes.append((await self._call([item]))[0])
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def _call(self, items: list[Item], served: list[Any] | None = None) -> list[Result]:
        """Run one forward pass in the worker thread (`served`: the spans of the requests it serves)."""
        loop = asyncio.get_running_loop()
        with tracing.forward_pass_span(self.span_attributes, len(items), served):
            results, seconds = await loop.run_in_executor(self._executor, self._timed_run, items)
        if self._observe is not None:
            self._observe(len(items), seconds)
        if len(results) != len(items):
            raise RuntimeError(f"a batch of {len(items)} items returned {len(results)} results")
        return results

    def _timed_run(self, items: list[Item]) -> tuple[list[Result], float]:
        """In the worker thread: the results, and how long the pass itself took (not the queueing around it)."""
        start = time.perf_counter()
        results = self._run(items)
        return results, time.perf_counter() - start

    async def close(self) -> None:
        """Stop: cancel the timer and wait for batches in flight."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for _, future, _ in self._pending:
            if not future.done():
                future.set_exception(RuntimeError("the service is shutting down"))
        self._pending.clear()
