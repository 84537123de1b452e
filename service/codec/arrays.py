"""NumPy arrays in and out, for bulk work: `.npy` bodies read safely, and answers streamed back as `.npy` or JSON.

A `.npy` body (`Content-Type: application/x-npy`) is checked from its header before anything is allocated: the
format version, a plain numeric dtype (never an object array: nothing is unpickled), the shape the operation
takes, at most `max_bulk` rows, and a size that matches the header exactly. The data is then viewed in place
(`np.frombuffer`), not copied.

The answer to a bulk request is computed in chunks (each handed to the inference thread whole, see
`InferenceEngine.in_bulk`) and streamed back chunk by chunk, so the process holds one chunk of results at a time;
the next chunk is already in the inference thread while the previous one is being written. At most
`max_concurrent_bulk` bulk requests are served at once per process; one more is answered 503 `busy` at once, before
its body is read, so memory stays bounded whatever the clients do. A client that stops reading its answer is cut
off after DIGITAE_WRITE_TIMEOUT_S (service/runtime/server.py), which ends the stream and frees its slot.
"""

from __future__ import annotations

import asyncio
import io
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from models.networks import SIDE
from service.codec.errors import BUSY, ApiError
from service.runtime.metrics import BULK_REFUSED
from service.runtime.tracing import span
from service.settings import NPY_HEADER_BYTES
from service.wire import json_bytes

NPY = "application/x-npy"
IMAGE_DTYPES = {"uint8": "0-255", "float32": "0-1"}  # dtype -> the scale its pixels are read in

Result = TypeVar("Result")


# -- reading -----------------------------------------------------------------------------------------------


def parse_npy(data: bytes, *, what: str, max_rows: int) -> np.ndarray:
    """The `.npy` file in `data` as an array viewed in place, after checking its header against what the
    operation takes (`what`: "images" or "latents"); 422 naming the problem otherwise."""
    stream = io.BytesIO(data)
    try:
        major, _minor = np.lib.format.read_magic(stream)
        if major == 1:
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream, max_header_size=NPY_HEADER_BYTES)
        elif major in (2, 3):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream, max_header_size=NPY_HEADER_BYTES)
        else:
            raise ValueError(f"unsupported .npy format version {major}")
    except (ValueError, TypeError, SyntaxError, RecursionError) as exc:  # what numpy and ast raise on a bad header
        raise ApiError(422, f"the body is not a readable .npy file ({_short(exc)}); write it with numpy.save") from None
    expected = "N x 28 x 28 uint8 (0-255) or float32 (0-1)" if what == "images" else "N x latent_dim float32"
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise ApiError(422, f"the .npy array must be plain numbers: {expected}; got dtype {dtype}")
    if what == "images":
        ok_dtype = dtype.kind in "uf" and dtype.name in IMAGE_DTYPES
        ok_shape = len(shape) == 3 and shape[1:] == (SIDE, SIDE)
    else:
        ok_dtype = dtype.name == "float32"
        ok_shape = len(shape) == 2
    if not ok_dtype or not ok_shape:
        got = "x".join(map(str, shape)) or "a scalar"
        raise ApiError(422, f"the .npy {what} must be {expected}; got {got} {dtype.name}")
    rows = shape[0]
    if rows < 1:
        raise ApiError(422, f"the .npy array has no rows; send at least one of the {what}")
    if rows > max_rows:
        raise ApiError(
            413, f"the .npy array has {rows:,} rows; the limit is {max_rows:,} (the service's cap, DIGITAE_MAX_BULK)"
        )
    count = math.prod(shape)  # Python integers: a shape like (4, 2**62) cannot wrap around to a small size
    start = stream.tell()
    expected_bytes = count * dtype.itemsize
    if len(data) - start != expected_bytes:
        raise ApiError(422, f"the .npy data is {len(data) - start:,} bytes; its header says {expected_bytes:,}")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=start)
    return array.reshape(shape, order="F" if fortran_order else "C")


def _short(exc: Exception) -> str:
    """numpy's reason, clipped, without the memory addresses of Python objects (ast's "<ast.Name object at 0x...>")."""
    text = _OBJECT_REPR.sub("an expression", str(exc))
    return text if len(text) <= 120 else text[:120] + "…"


_OBJECT_REPR = re.compile(r"<[^<>]*? at 0x[0-9a-fA-F]+>")


def images_from_npy(array: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 or float32 -> float32 in [0, 1] (taken as already preprocessed, like `pixels`)."""
    if array.dtype.name == "uint8":
        return array.astype(np.float32) * np.float32(1 / 255)
    images = array.astype(np.float32, copy=False)
    finite = np.isfinite(images)
    if not finite.all():
        index = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ApiError(422, f"the .npy images must be finite; image {index[0]} row {index[1]} column {index[2]} is not")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise ApiError(
            422, f"float32 .npy images are read as 0-1; values run from {low:g} to {high:g} (send uint8 for 0-255)"
        )
    return images


def latents_from_npy(array: np.ndarray, latent_dim: int, limit: float) -> np.ndarray:
    if array.shape[1] != latent_dim:
        raise ApiError(422, f"the .npy latents must be N x {latent_dim} (the model's latent_dim); got {array.shape[1]}")
    finite = np.isfinite(array)
    if not finite.all() or float(np.abs(array).max()) > limit:
        row = int(np.argwhere(~finite | (np.abs(np.where(finite, array, 0)) > limit))[0][0])
        raise ApiError(422, f"latent {row} of the .npy array: every value must be a finite number within ±{limit:g}")
    return array


Release = Callable[[], None]


class BulkSlots:
    """At most `limit` bulk requests at once in this process; one more gets 503 before its body is read."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def take(self) -> Release:
        """A slot, or 503; call the returned function (idempotent) to give it back."""
        if self.active >= self.limit:
            BULK_REFUSED.inc()
            raise ApiError(
                503,
                f"{self.active} bulk requests are being served, the most at once (DIGITAE_MAX_CONCURRENT_BULK); "
                "retry shortly",
                code=BUSY,
                headers={"Retry-After": "1"},
            )
        self.active += 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            if not given_back:
                given_back = True
                self.active -= 1

        return give_back


async def read_npy(
    request: Request, slots: BulkSlots, *, what: str, max_rows: int, convert: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, Release]:
    """A bulk slot, then the `.npy` body checked, viewed in place and `convert`ed (which checks the values);
    the caller gives the slot back (`Release`) once the answer is sent."""
    release = slots.take()
    try:
        return convert(parse_npy(await request.body(), what=what, max_rows=max_rows)), release
    except BaseException:
        release()
        raise


# -- computing in chunks -----------------------------------------------------------------------------------


async def in_chunks(
    items: np.ndarray, size: int, run: Callable[[list[Any]], Awaitable[list[Result]]]
) -> AsyncIterator[list[Result]]:
    """`run` on successive chunks of `items`, the next chunk submitted before the previous one is handed on."""
    starts = range(0, len(items), size)
    pending: asyncio.Task[list[Result]] | None = None
    try:
        for start in starts:
            task = asyncio.ensure_future(run(list(items[start : start + size])))
            if pending is not None:
                yield await pending
            pending = task
        if pending is not None:
            done, pending = pending, None
            yield await done
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


# -- writing -----------------------------------------------------------------------------------------------


def npy_header(dtype: np.dtype[Any], shape: tuple[int, ...]) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        stream, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    )
    return stream.getvalue()  # the magic string, the version and the padded header


def npy_bytes(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array)
    return npy_header(array.dtype, array.shape) + array.tobytes()


def npy_response(array: np.ndarray, headers: dict[str, str] | None = None) -> Response:
    with span("render", {"digitae.media_type": NPY}):
        return Response(npy_bytes(array), media_type=NPY, headers=headers)


async def npy_chunks(rows: int, chunks: AsyncIterator[np.ndarray]) -> AsyncIterator[bytes]:
    """One `.npy` of `rows` rows from arrays of rows; the header is written with the first chunk."""
    first = True
    async for chunk in chunks:
        block = np.ascontiguousarray(chunk)
        if first:
            yield npy_header(block.dtype, (rows, *block.shape[1:])) + block.tobytes()
            first = False
        else:
            yield block.tobytes()


async def json_results_chunks(chunks: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """`{"results": [...]}` written chunk by chunk."""
    yield b'{"results":['
    first = True
    async for views in chunks:
        if views:
            yield (b"" if first else b",") + json_bytes(views)[1:-1]
            first = False
    yield b"]}"


class BulkResponse(StreamingResponse):
    """A streamed answer that gives its bulk slot back when it is done, sent or not: as soon as the last chunk
    is made (before the client can see the end of the answer and send the next request), or when sending fails."""

    def __init__(
        self, content: AsyncIterator[bytes], media_type: str, on_close: Callable[[], None], **kwargs: Any
    ) -> None:
        super().__init__(_then(content, on_close), media_type=media_type, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


async def _then(content: AsyncIterator[bytes], on_close: Callable[[], None]) -> AsyncIterator[bytes]:
    try:
        async for block in content:
            yield block
    finally:
        on_close()


def stream_npy(
    chunks: AsyncIterator[list[Result]],
    rows: int,
    to_array: Callable[[list[Result]], np.ndarray],
    release: Release,
    headers: dict[str, str] | None = None,
) -> BulkResponse:
    """A bulk request's answer as one `.npy` array of `rows` rows, streamed as the results come."""
    return BulkResponse(npy_chunks(rows, _mapped(chunks, to_array)), NPY, release, headers=headers)


def stream_json(
    chunks: AsyncIterator[list[Result]], to_view: Callable[[Result], dict[str, Any]], release: Release
) -> BulkResponse:
    """A bulk request's answer as JSON `{"results": [...]}`, streamed as the results come."""
    views = _mapped(chunks, lambda results: [to_view(result) for result in results])
    return BulkResponse(json_results_chunks(views), "application/json", release)


async def _mapped(chunks: AsyncIterator[list[Result]], convert: Callable[[list[Result]], Any]) -> AsyncIterator[Any]:
    async for chunk in chunks:
        yield convert(chunk)
