"""How many requests that may share a micro-batch the app is handling right now.

The micro-batcher waits for company only when another such request is in flight (`InFlight.others`; the app
holds its count in `app.state.in_flight`).
Only POSTs under /v1 count: a health check, a metrics scrape or a page of the docs never joins a forward
pass, so it must not make a lone inference request wait for one.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

BATCHING_PREFIX = "/v1/"


class InFlight:
    """The count, one per app (its event loop is the only writer): the middleware counts, the engine asks."""

    def __init__(self) -> None:
        self.count = 0

    def others(self) -> bool:
        """True when a request besides the caller's is in flight: a micro-batch may get company."""
        return self.count > 1


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
        self.in_flight.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight.count -= 1
