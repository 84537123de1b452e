"""The in-flight counts the micro-batcher asks before waiting: only requests still on their way to a batcher are
company; one already served (writing its answer) or answered without a forward pass is not."""

from __future__ import annotations

import asyncio

import pytest

from service.middleware.in_flight import InFlight, InFlightMiddleware

ENCODE = {"type": "http", "method": "POST", "path": "/v1/models/ae-6/encode", "headers": []}


async def nothing() -> dict[str, object]:
    return {}


async def ignore(message: object) -> None:
    return None


def test_a_request_past_its_batcher_is_not_waited_for_and_one_before_it_is() -> None:
    in_flight = InFlight()
    seen: dict[str, object] = {}

    async def scenario() -> None:
        first_served, first_may_finish = asyncio.Event(), asyncio.Event()
        second_entered = asyncio.Event()

        async def first(scope: object, receive: object, send: object) -> None:
            await second_entered.wait()
            seen["first, the second not at a batcher yet"] = in_flight.others_coming()
            in_flight.arrived()
            first_served.set()
            await first_may_finish.wait()  # writing its answer

        async def second(scope: object, receive: object, send: object) -> None:
            second_entered.set()
            await first_served.wait()
            in_flight.arrived()
            seen["second, the first served"] = in_flight.others_coming()
            seen["counts"] = (in_flight.count, in_flight.coming)
            first_may_finish.set()

        await asyncio.gather(
            InFlightMiddleware(first, in_flight)(ENCODE, nothing, ignore),
            InFlightMiddleware(second, in_flight)(ENCODE, nothing, ignore),
        )

    asyncio.run(scenario())
    assert seen["first, the second not at a batcher yet"] is True, "a request on its way to a batcher is company"
    assert seen["second, the first served"] is False, "a request already served is no company to wait for"
    assert seen["counts"] == (2, 0), "both still in flight, neither on its way to a batcher"
    assert (in_flight.count, in_flight.coming) == (0, 0)


def test_a_request_answered_without_a_forward_pass_stops_counting_as_coming() -> None:
    in_flight = InFlight()
    seen: list[int] = []

    async def refused(scope: object, receive: object, send: object) -> None:
        seen.append(in_flight.coming)
        raise ValueError("a bad image")

    with pytest.raises(ValueError, match="a bad image"):
        asyncio.run(InFlightMiddleware(refused, in_flight)(ENCODE, nothing, ignore))
    assert seen == [1], "on its way while the app handles it"
    assert (in_flight.count, in_flight.coming) == (0, 0), "and no longer once it left, though it never arrived"


def test_arriving_twice_counts_once() -> None:
    in_flight = InFlight()

    async def two_batchers(scope: object, receive: object, send: object) -> None:
        in_flight.arrived()
        in_flight.arrived()  # a second operation in the same request
        assert in_flight.coming == 0

    asyncio.run(InFlightMiddleware(two_batchers, in_flight)(ENCODE, nothing, ignore))
    assert (in_flight.count, in_flight.coming) == (0, 0)
