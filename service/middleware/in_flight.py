"""How many requests that may share a micro-batch the app is handling right now, and how many of them are still
on their way to one.

The micro-batcher waits for company only while another such request has yet to reach a batcher
(`InFlight.others_coming`; the app holds the counts in `app.state.in_flight`). A request that has already been served
(its answer being encoded or sent) cannot join a forward pass any more: counting it made a lone request at
concurrency 2 sit out the whole wait for a partner that was only writing its answer.
Only POSTs under /v1 count: a health check, a metrics scrape or a page of the docs never joins a forward
pass, so it must not make a lone inference request wait for one.
"""

from __future__ import annotations

from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

BATCHING_PREFIX = "/v1/"


class _Arrival:
    """Whether the request of this context has reached a micro-batcher yet."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


_arrival: ContextVar[_Arrival | None] = ContextVar("digitae_batcher_arrival", default=None)


class InFlight:
    """The counts, one per app (its event loop is the only writer): the middleware counts, the engine asks."""

    def __init__(self) -> None:
        self.count = 0  # requests in the app
        self.coming = 0  # of those, the ones that have not reached a micro-batcher yet

    def arrived(self) -> None:
        """The calling request has reached a micro-batcher: nobody waits for it any longer (once per request)."""
        arrival = _arrival.get()
        if arrival is not None and not arrival.done:
            arrival.done = True
            self.coming -= 1

    def others_coming(self) -> bool:
        """True when another request is still on its way to a batcher: a micro-batch may get company."""
        return self.coming > 0


def may_batch(scope: Scope) -> bool:
    return scope["type"] == "http" and scope.get("method") == "POST" and scope["path"].startswith(BATCHING_PREFIX)


class InFlightMiddleware:
    """Counts the requests that may share a micro-batch while the app handles them."""

    def __init__(self, app: ASGIApp, in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not may_batch(scope):
            await self.app(scope, receive, send)
            return
        in_flight, arrival = self.in_flight, _Arrival()
        in_flight.count += 1
        in_flight.coming += 1
        token = _arrival.set(arrival)
        try:
            await self.app(scope, receive, send)
        finally:
            _arrival.reset(token)
            in_flight.count -= 1
            if not arrival.done:  # answered without a forward pass (an error, a bulk request)
                in_flight.coming -= 1
