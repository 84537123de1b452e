"""What the inference routes share: the one array of a `.npy` answer, the bulk body, the bulk chunk size."""

from __future__ import annotations

from functools import partial

import numpy as np
from fastapi import Request

from service.api.deps import (
    ModelCall,
)
from service.codec.arrays import (
    NPY,
    Release,
    images_from_npy,
    latents_from_npy,
    read_npy,
)
from service.codec.errors import ApiError
from service.codec.render import (
    JSON,
    PNG,
)
from service.codec.schemas import LATENT_LIMIT
from service.settings import Settings


def checked_array_field(call: ModelCall, arrays: tuple[str, ...], valid: tuple[str, ...]) -> str:
    """The one field an application/x-npy answer holds (for a JSON answer, the `fields` are checked instead),
    checked before any work is done."""
    if call.output.png:
        raise ApiError(406, f"a .npy request is answered with {JSON} or {NPY}, not {PNG}")
    if not call.output.npy:
        call.output.fields(valid)
        return arrays[0]
    field = call.output.array_field(arrays, valid)
    if field == "logvar" and call.model.kind != "vae":
        raise ApiError(422, f"fields: logvar belongs to a VAE's answer; {call.model.name} is an auto-encoder")
    return field


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
