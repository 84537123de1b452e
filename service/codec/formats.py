"""The answer's format, a strategy chosen once per request from the negotiated output: JSON, one PNG, or one `.npy`
array. Each answers one result or a batch (a result made of many images, like samples, is one PNG grid); JSON and
`.npy` also stream a bulk request's results as they come, and each says which fields it shows (`needs`), so a route
computes only those.

An operation says once how its results look (`render.Rendering`: the JSON view of one result, the array of many
results for one field, the image of one result for a PNG). A route reads the request, runs the engine, and hands the
results to the format it chose; the format never knows which operation it answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from starlette.responses import Response

from service.catalog.registry import ServedModel
from service.codec.arrays import NPY, Release, npy_response, stream_json, stream_npy
from service.codec.errors import ApiError
from service.codec.render import JSON, PNG, ImageOutput, Rendering, array_headers, json_response

R = TypeVar("R")


class AnswerFormat(Protocol[R]):
    def answer(self, results: Sequence[R], is_batch: bool) -> Response:
        """One result (is_batch false) or a batch's, in order."""

    def stream(self, chunks: AsyncIterator[list[R]], rows: int, release: Release) -> Response:
        """A bulk request's `rows` results, streamed chunk by chunk; `release` gives its bulk slot back."""

    def needs(self, field: str) -> bool:
        """Whether the answer shows `field`: what it does not show need not be computed (e.g. images decoded)."""


@dataclass(frozen=True, slots=True)
class JsonAnswer(Generic[R]):
    rendering: Rendering[R]
    output: ImageOutput
    want: frozenset[str]

    def needs(self, field: str) -> bool:
        return field in self.want

    def _view(self, result: R) -> dict[str, Any]:
        return self.rendering.view(result, self.output, self.want)

    def answer(self, results: Sequence[R], is_batch: bool) -> Response:
        views = [self._view(result) for result in results]
        return json_response({"results": views} if is_batch else views[0])

    def stream(self, chunks: AsyncIterator[list[R]], rows: int, release: Release) -> Response:
        return stream_json(chunks, self._view, release)


@dataclass(frozen=True, slots=True)
class NpyAnswer(Generic[R]):
    rendering: Rendering[R]
    field: str
    headers: dict[str, str]

    def needs(self, field: str) -> bool:
        return field == self.field

    def _array(self, results: Sequence[R]) -> np.ndarray:
        return self.rendering.array(results, self.field)

    def answer(self, results: Sequence[R], is_batch: bool) -> Response:
        return npy_response(self._array(results), self.headers)

    def stream(self, chunks: AsyncIterator[list[R]], rows: int, release: Release) -> Response:
        return stream_npy(chunks, rows, self._array, release, self.headers)


@dataclass(frozen=True, slots=True)
class PngAnswer(Generic[R]):
    """Each result's image, in one PNG (several: a grid)."""

    image: Callable[[R], np.ndarray]
    output: ImageOutput
    drawn: str

    def needs(self, field: str) -> bool:
        return field == self.drawn

    def answer(self, results: Sequence[R], is_batch: bool) -> Response:
        return self.output.png_response([self.image(result) for result in results])

    def stream(self, chunks: AsyncIterator[list[R]], rows: int, release: Release) -> Response:
        raise AssertionError("answer_format refuses a PNG answer to a bulk request")


@dataclass(frozen=True, slots=True)
class GridAnswer(Generic[R]):
    """One result that is many images (samples, a path), in one PNG grid of the rendering's columns."""

    grid: Callable[[R], tuple[Sequence[np.ndarray], int | None]]
    output: ImageOutput
    drawn: str

    def needs(self, field: str) -> bool:
        return field == self.drawn

    def answer(self, results: Sequence[R], is_batch: bool) -> Response:
        (result,) = results
        images, columns = self.grid(result)
        return self.output.png_response(images, columns)

    def stream(self, chunks: AsyncIterator[list[R]], rows: int, release: Release) -> Response:
        raise AssertionError("answer_format refuses a PNG answer to a bulk request")


def answer_format(output: ImageOutput, rendering: Rendering[R], model: ServedModel, *, bulk: bool) -> AnswerFormat[R]:
    """The format negotiated for this request, its `fields` checked before any work is done."""
    if output.png:
        if bulk:
            raise ApiError(406, f"a .npy request is answered with {JSON} or {NPY}, not {PNG}")
        if rendering.grid is not None:
            return GridAnswer(rendering.grid, output, rendering.drawn)
        assert rendering.image is not None, "a route without a PNG answer does not offer image/png"
        return PngAnswer(rendering.image, output, rendering.drawn)
    if output.npy:
        field = npy_field(output, rendering.arrays, rendering.fields, model)
        return NpyAnswer(rendering, field, array_headers(field, model.kind))
    return JsonAnswer(rendering, output, output.fields(rendering.fields))


def npy_field(output: ImageOutput, arrays: tuple[str, ...], valid: tuple[str, ...], model: ServedModel) -> str:
    """The one field a `.npy` answer holds: the one asked for in `fields`, else the first of `arrays`; `logvar`
    only from a VAE."""
    field = output.array_field(arrays, valid)
    if field == "logvar" and model.kind != "vae":
        raise ApiError(422, f"fields: logvar belongs to a VAE's answer; {model.name} is an auto-encoder")
    return field
