"""Bulk `.npy` requests: one handler for every operation that takes them, dispatched in one place by the body's
Content-Type (`takes_bulk`), with the `.npy` body read while holding a bulk slot and run in chunks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Literal, TypeVar

import numpy as np
from fastapi import Request
from starlette.responses import Response

from service.api.declarations import successor_of
from service.api.deps import ModelCall
from service.codec.arrays import NPY, Release, images_from_npy, in_chunks, latents_from_npy, read_npy
from service.codec.formats import answer_format
from service.codec.inputs import media_type
from service.codec.render import Rendering
from service.codec.schemas import LATENT_LIMIT
from service.settings import Settings

R = TypeVar("R")
Handler = Callable[[Request, ModelCall], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class BulkOperation(Generic[R]):
    """What an operation does with a bulk request: the rows it reads, how it runs a chunk, how it answers."""

    what: Literal["images", "latents"]
    run: Callable[[ModelCall, list[np.ndarray]], Awaitable[list[R]]]
    rendering: Rendering[R]


def takes_bulk(
    operation: BulkOperation[Any], model_call: Callable[[Request], ModelCall], *, deprecated: bool = False
) -> Callable[[Handler], Any]:
    """The route: a `.npy` body goes to `answer_bulk`, any other to the operation's own handler, each given the
    request's `model_call` (the model and the negotiated output). On a single operation (`deprecated`), a `.npy`
    body is the old form of its `/batch` route's: still answered, marked with its successor."""

    def route_of(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            call = model_call(request)
            if media_type(request) == NPY:
                answer = await answer_bulk(request, call, operation)
                return successor_of(request, answer) if deprecated else answer
            return await handler(request, call)

        route.__name__, route.__qualname__, route.__doc__ = handler.__name__, handler.__qualname__, handler.__doc__
        return route

    return route_of


async def answer_bulk(request: Request, call: ModelCall, operation: BulkOperation[R]) -> Response:
    """Read (the `.npy` rows, once the answer's format is known to be possible), run in chunks, stream the answer."""
    answer = answer_format(call.output, operation.rendering, call.model, bulk=True)
    array, release = await read_bulk(request, call, operation.what)
    chunks = in_chunks(array, bulk_chunk(call), partial(operation.run, call))
    return answer.stream(chunks, len(array), release)


async def read_bulk(request: Request, call: ModelCall, what: str) -> tuple[np.ndarray, Release]:
    """The `.npy` body as float32 images in [0, 1] or latents, checked, holding one of the bulk slots."""
    if what == "images":
        convert = images_from_npy
    else:
        convert = partial(latents_from_npy, latent_dim=call.model.latent_dim, limit=LATENT_LIMIT)
    max_rows = call.settings.max_bulk
    return await read_npy(request, call.service.bulk_slots, what=what, max_rows=max_rows, convert=convert)


def bulk_chunk(call: ModelCall) -> int:
    """Rows per chunk of a bulk request: a few micro-batches per hand-off to the inference thread (fewer hand-offs,
    more images/s), few enough that single requests queued behind a chunk wait tens of milliseconds, not seconds."""
    return bulk_chunk_rows(call.settings)


def bulk_chunk_rows(settings: Settings) -> int:
    """`bulk_chunk` from the settings alone (the Open Inference Protocol's bulk path, service/api/v2.py)."""
    return 4 * settings.microbatch_max_size
