"""Fast dispatch: a request to a route whose declaration needs none of FastAPI's per-request machinery goes straight
to its handler.

FastAPI's dispatch costs an inference request about a quarter of its event-loop time (the included routers matched in
turn, `solve_dependencies` with next to nothing to solve, exit stacks and exception wrappers), and the inference
routes use none of it: they read their own parameters and bodies (service/api/deps.py). `FastDispatch` sits
innermost in the middleware stack (request context, CORS, the in-flight count and the body cap still run) and, when
the app starts, reads the app's own routes (`iter_route_contexts(app.routes)`: what FastAPI matches and documents)
into its table: every `APIRoute` whose handler is a coroutine answering a `Response`, with no request body to parse
(the `Request`, path, query, header and cookie parameters, each checked by FastAPI's own `request_params_to_args`)
and whose dependencies (the API-key check, `get_json_service`, ...) are of the same kind. A route added to any
router is in the table with no other edit; any other route, and any request while `app.dependency_overrides` is
set or FastAPI's own telemetry is on, goes through FastAPI unchanged.

A request answered here is answered as FastAPI would: the first route in FastAPI's order that matches the path and
the method (a method the route does not take falls through to FastAPI's 405), `scope["route"]`, `"endpoint"`,
`"path_params"` and `"router"` set as the router sets them (the metrics and the access line read the route's
template), the dependencies run in FastAPI's order with its caching and its 422 for a bad parameter, and every
exception answered by the app's own exception handlers (the one error envelope), or raised on to the request
context's last-resort 500 like FastAPI's.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_typed_return_annotation, request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ExceptionHandler = Callable[[Request, Exception], Any]


def _awaitable(call: Callable[..., Any] | None) -> bool:
    """Whether calling `call` gives a coroutine (a coroutine function, or an instance whose `__call__` is one)."""
    if call is None or inspect.isclass(call):
        return False
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)


def solvable(dependant: Dependant) -> bool:
    """Whether `solve` gives what FastAPI's `solve_dependencies` gives: no body, no background tasks, response,
    websocket or security scopes to provide, no generator dependencies, coroutines only."""
    return (
        not dependant.body_params
        and dependant.background_tasks_param_name is None
        and dependant.response_param_name is None
        and dependant.websocket_param_name is None
        and dependant.security_scopes_param_name is None
        and not dependant.own_oauth_scopes
        and not dependant.parent_oauth_scopes
        and dependant.concurrency is None
        and _awaitable(dependant.call)
        and all(solvable(sub) for sub in dependant.dependencies)
    )


def answers_response(endpoint: Callable[..., Any]) -> bool:
    """Whether the handler declares that it answers a `Response` (nothing for FastAPI to serialize)."""
    annotation = get_typed_return_annotation(endpoint)
    return inspect.isclass(annotation) and issubclass(annotation, Response)


def eligible(context: RouteContext) -> bool:
    """A route `FastDispatch` answers: an `APIRoute` whose declaration `solve` covers, answering a `Response`."""
    route = context.original_route
    if not isinstance(route, APIRoute) or getattr(context, "max_body_size", None) is not None:
        return False
    dependant: Dependant | None = getattr(context, "dependant", None)
    endpoint = context.endpoint
    return dependant is not None and endpoint is not None and solvable(dependant) and answers_response(endpoint)


async def solve(
    dependant: Dependant, request: Request, errors: list[Any], cache: dict[Callable[..., Any], Any]
) -> dict[str, Any]:
    """The keyword arguments of `dependant.call`, as FastAPI's `solve_dependencies` finds them (for a `solvable`
    dependant): each dependency in order (skipped when its own parameters are wrong; its value cached per request
    unless `use_cache=False`), then the parameters, checked by FastAPI's `request_params_to_args`. Parameter
    problems are added to `errors`."""
    values: dict[str, Any] = {}
    for sub in dependant.dependencies:
        sub_errors: list[Any] = []
        arguments = await solve(sub, request, sub_errors, cache)
        if sub_errors:
            errors.extend(sub_errors)
            continue
        call = sub.call
        assert call is not None  # solvable
        if sub.use_cache and call in cache:
            solved = cache[call]
        else:
            solved = await call(**arguments)
        if sub.name is not None:
            values[sub.name] = solved
        cache.setdefault(call, solved)
    if dependant.path_params:
        _check(values, errors, dependant.path_params, request.path_params)
    if dependant.query_params:
        _check(values, errors, dependant.query_params, request.query_params)
    if dependant.header_params:
        _check(values, errors, dependant.header_params, request.headers)
    if dependant.cookie_params:
        _check(values, errors, dependant.cookie_params, request.cookies)
    if dependant.request_param_name is not None:
        values[dependant.request_param_name] = request
    if dependant.http_connection_param_name is not None:
        values[dependant.http_connection_param_name] = request
    return values


def _check(values: dict[str, Any], errors: list[Any], fields: Sequence[Any], received: Mapping[str, Any]) -> None:
    found, problems = request_params_to_args(fields, received)
    values.update(found)
    errors.extend(problems)


@dataclass(frozen=True, slots=True)
class FastRoute:
    """What answering an eligible route takes, read once from its route context."""

    route: APIRoute  # what `scope["route"]` names (its `path` is the template the metrics use)
    endpoint: Callable[..., Any]
    dependant: Dependant  # the route's, with the dependencies its routers add (the API-key check)
    param_convertors: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One route in FastAPI's order: how to tell that it matches a request fully, and how to answer it when
    eligible (`fast`)."""

    context: RouteContext
    fast: FastRoute | None
    path_regex: re.Pattern[str] | None  # a route's (not a mount's): matched here, as its `matches` would
    methods: frozenset[str] | None

    @classmethod
    def of(cls, context: RouteContext) -> Candidate:
        fast = None
        if eligible(context):
            route, endpoint = context.original_route, context.endpoint
            assert isinstance(route, APIRoute) and endpoint is not None  # eligible
            fast = FastRoute(route, endpoint, context.dependant, dict(context.param_convertors))
        if isinstance(context.original_route, Route):  # an APIRoute, or a Starlette route (/openapi.json)
            methods = context.methods
            return cls(context, fast, context.path_regex, frozenset(methods) if methods is not None else None)
        return cls(context, fast, None, None)

    def matches(self, scope: Scope, path: str) -> re.Match[str] | None:
        """The path's match when the route takes this request (path and method), else None."""
        if self.path_regex is None:
            match, _ = self.context.matches(scope)
            return _WHOLE.match(path) if match is Match.FULL else None
        found = self.path_regex.match(path)
        if found is None or (self.methods is not None and scope["method"] not in self.methods):
            return None
        return found


_WHOLE = re.compile(r".*", re.DOTALL)


def route_table(routes: list[BaseRoute]) -> list[Candidate]:
    """Every route of the app in the order FastAPI tries them, each marked eligible or not."""
    return [Candidate.of(context) for context in iter_route_contexts(routes)]


def fast_routes(routes: list[BaseRoute]) -> list[APIRoute]:
    """The routes `FastDispatch` answers itself."""
    return [candidate.fast.route for candidate in route_table(routes) if candidate.fast is not None]


class FastDispatch:
    """The innermost middleware: eligible routes answered here, everything else by the app's router (through
    FastAPI's exception middleware, as always). The table is read when the app builds its middleware stack (on
    startup), so it holds every route added until then."""

    def __init__(self, app: ASGIApp, application: FastAPI) -> None:
        self.app = app
        self.application = application
        table = route_table(application.routes)
        # per method, the routes that may take it, in order (one that takes only other methods cannot be FastAPI's
        # first full match); a method no eligible route takes goes straight to FastAPI
        self.by_method = {
            method: [c for c in table if c.methods is None or method in c.methods]
            for method in {method for c in table if c.fast is not None and c.methods for method in c.methods}
        }
        # as Starlette's ExceptionMiddleware takes them from the app (500 and Exception go to ServerErrorMiddleware)
        handlers = {k: v for k, v in application.exception_handlers.items() if k not in (500, Exception)}
        self.status_handlers: dict[int, ExceptionHandler] = {k: v for k, v in handlers.items() if isinstance(k, int)}
        self.class_handlers: dict[type[BaseException], ExceptionHandler] = {
            k: v for k, v in handlers.items() if isinstance(k, type)
        }

    def _select(self, scope: Scope) -> tuple[FastRoute, re.Match[str]] | None:
        """The route FastAPI would run (the first full match) with the path's match, when it is answered here."""
        candidates = self.by_method.get(scope["method"])
        if candidates is None:
            return None
        path = scope["path"]
        for candidate in candidates:
            found = candidate.matches(scope, path)
            if found is not None:
                return (candidate.fast, found) if candidate.fast is not None else None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("root_path")
            or scope.get("fastapi.telemetry") is not None  # FastAPI's own telemetry follows its router
            or self.application.dependency_overrides
        ):
            await self.app(scope, receive, send)
            return
        selected = self._select(scope)
        if selected is None:
            await self.app(scope, receive, send)
            return
        await self._answer(*selected, scope, receive, send)

    async def _answer(self, fast: FastRoute, found: re.Match[str], scope: Scope, receive: Receive, send: Send) -> None:
        path_params = dict(scope.get("path_params", {}))
        for key, value in found.groupdict().items():
            path_params[key] = fast.param_convertors[key].convert(value)
        scope["path_params"] = path_params
        scope["endpoint"] = fast.endpoint
        scope["route"] = fast.route
        scope.setdefault("router", self.application.router)
        request = Request(scope, receive, send)
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            errors: list[Any] = []
            values = await solve(fast.dependant, request, errors, {})
            if errors:
                raise RequestValidationError(errors)
            response: Response = await fast.endpoint(**values)
            await response(scope, receive, sender)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            if started:  # as Starlette: an answer already begun cannot become an error answer
                raise RuntimeError("Caught handled exception, but response already started.") from exc
            if inspect.iscoroutinefunction(handler):
                answer = await handler(request, exc)
            else:
                answer = await run_in_threadpool(handler, request, exc)
            if answer is not None:
                await answer(scope, receive, sender)

    def _handler_for(self, exc: Exception) -> ExceptionHandler | None:
        """The app's handler for `exc`, looked up as Starlette's exception middleware does."""
        if isinstance(exc, HTTPException) and exc.status_code in self.status_handlers:
            return self.status_handlers[exc.status_code]
        return _by_class(self.class_handlers, exc)


def _by_class(handlers: Mapping[type[BaseException], ExceptionHandler], exc: Exception) -> ExceptionHandler | None:
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None
