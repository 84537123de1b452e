"""The micro-batcher: concurrent items share one call, in order, off the event loop; errors stay with their caller."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from service.engine.batching import MicroBatcher


async def submit(batcher: MicroBatcher[int, int], item: int) -> int:
    """One caller with one item, as a single request is (the engine hands every request's items over at once)."""
    return (await batcher.submit_many([item]))[0]


def test_microbatcher_groups_concurrent_items_and_keeps_their_order() -> None:
    sizes: list[int] = []

    def double(items: list[int]) -> list[int]:
        time.sleep(0.005)  # a forward pass takes a while; more callers queue meanwhile
        return [2 * item for item in items]

    async def scenario() -> list[int]:
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(
                double, executor=executor, max_size=16, wait_s=0.005, observe=lambda size, _: sizes.append(size)
            )
            return await asyncio.gather(*(submit(batcher, i) for i in range(100)))

    assert asyncio.run(scenario()) == [2 * i for i in range(100)]
    assert sum(sizes) == 100 and max(sizes) <= 16 and len(sizes) < 100


def test_microbatcher_sends_a_lone_item_at_once_when_nobody_could_join() -> None:
    async def scenario() -> float:
        with ThreadPoolExecutor(1) as executor:
            batcher: MicroBatcher[int, int] = MicroBatcher(
                lambda items: items, executor=executor, wait_s=30.0, worth_waiting=lambda: False
            )
            return await asyncio.wait_for(submit(batcher, 7), timeout=10)

    assert asyncio.run(scenario()) == 7  # did not sit out the 30 s wait


def test_microbatcher_errors_reach_only_the_caller_that_caused_them() -> None:
    def picky(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("13 is unlucky")
        return [item + 1 for item in items]

    async def scenario() -> list[int | BaseException]:
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(picky, executor=executor, max_size=64, wait_s=0.01)
            return await asyncio.gather(*(submit(batcher, i) for i in range(20)), return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert isinstance(outcomes[13], ValueError)
    assert [o for i, o in enumerate(outcomes) if i != 13] == [i + 1 for i in range(20) if i != 13]


def test_microbatcher_can_be_switched_off() -> None:
    sizes: list[int] = []

    async def scenario() -> list[int]:
        with ThreadPoolExecutor(1) as executor:
            batcher: MicroBatcher[int, int] = MicroBatcher(
                lambda items: [-i for i in items],
                executor=executor,
                enabled=False,
                observe=lambda size, _: sizes.append(size),
            )
            singles = await asyncio.gather(*(submit(batcher, i) for i in range(10)))
            many = await batcher.submit_many(list(range(5)))
            return [*singles, *many]

    assert asyncio.run(scenario()) == [-i for i in range(10)] + [-i for i in range(5)]
    assert sizes == [1] * 10 + [5]  # a batch request still travels as one forward pass


def test_microbatcher_runs_off_the_event_loop() -> None:
    loop_thread: list[int] = []
    work_thread: list[int] = []

    def record(items: list[int]) -> list[int]:
        work_thread.append(threading.get_ident())
        return items

    async def scenario() -> None:
        loop_thread.append(threading.get_ident())
        with ThreadPoolExecutor(1) as executor:
            await submit(MicroBatcher(record, executor=executor), 1)

    asyncio.run(scenario())
    assert work_thread and work_thread[0] != loop_thread[0]


class Coming:
    """A stand-in for the app's in-flight count: `coming` requests are on their way to a batcher."""

    def __init__(self, coming: int) -> None:
        self.coming = coming

    def arrived(self) -> None:
        self.coming -= 1

    def others_coming(self) -> bool:
        return self.coming > 0


def test_microbatcher_waits_for_the_requests_on_their_way_and_goes_when_the_last_arrives() -> None:
    """Three requests in flight: the first two wait, the third completes the batch, long before the 30 s wait."""
    sizes: list[int] = []
    coming = Coming(3)

    async def scenario() -> tuple[list[int], float]:
        with ThreadPoolExecutor(1) as executor:
            batcher: MicroBatcher[int, int] = MicroBatcher(
                lambda items: items,
                executor=executor,
                wait_s=30.0,
                worth_waiting=coming.others_coming,
                arrived=coming.arrived,
                observe=lambda size, _: sizes.append(size),
            )
            first = asyncio.ensure_future(submit(batcher, 1))
            second = asyncio.ensure_future(submit(batcher, 2))
            await asyncio.sleep(0.05)
            waiting = len(sizes)  # nothing sent yet: a third request is still on its way
            started = time.perf_counter()
            third = await asyncio.wait_for(submit(batcher, 3), timeout=10)
            return [waiting, await first, await second, third], time.perf_counter() - started

    (waiting, *results), seconds = asyncio.run(scenario())
    assert waiting == 0, "the first two items wait while a third request is on its way"
    assert results == [1, 2, 3] and sizes == [3], f"one pass of all three expected, got passes of {sizes}"
    assert seconds < 10, "the batch goes when the last request arrives, not when the wait runs out"


def test_microbatcher_sends_a_batch_at_the_deadline_when_a_request_on_its_way_never_comes() -> None:
    sizes: list[int] = []
    coming = Coming(2)  # the second request never reaches the batcher (say, its image was refused)

    async def scenario() -> int:
        with ThreadPoolExecutor(1) as executor:
            batcher: MicroBatcher[int, int] = MicroBatcher(
                lambda items: items,
                executor=executor,
                wait_s=0.05,
                worth_waiting=coming.others_coming,
                arrived=coming.arrived,
                observe=lambda size, _: sizes.append(size),
            )
            return await asyncio.wait_for(submit(batcher, 5), timeout=10)

    assert asyncio.run(scenario()) == 5 and sizes == [1], "the lone item goes when the wait runs out"
