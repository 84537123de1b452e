"""The generation routes: samples around a centroid, and straight paths through the latent space. Each reads the
body, draws or walks the latents, decodes what the negotiated answer shows, and hands the result to that answer."""

from __future__ import annotations

import torch
from fastapi import APIRouter, Request
from starlette.responses import Response

from models.corruptions import draw_seed
from models.latents import path_positions, sample_latents, straight_path
from service.api import examples
from service.api import openapi as docs
from service.api.declarations import BODY_ERRORS
from service.api.deps import (
    ModelCall,
    image_call_parameters,
    image_model_call,
)
from service.api.errors import error_responses
from service.codec.answers import InterpolateResult, PriorSampleResult, SampleResult
from service.codec.errors import ApiError
from service.codec.formats import answer_format
from service.codec.inputs import ImageSource, load_images, read_json
from service.codec.render import INTERPOLATION, PRIOR_SAMPLING, SAMPLING, Rendering, Samples, Walk
from service.codec.schemas import InterpolateRequest, PriorSampleRequest, SampleRequest

v1 = APIRouter(prefix="/v1")  # create_app adds the API-key check when keys are set
PRIOR_SIGMA = 1.0  # the prior is N(0, I): sample_latents ignores sigma without a digit


@v1.post(
    "/models/{name}/sample",
    tags=["generation"],
    summary="Draw new digits around a centroid",
    description="`n` latents drawn from N(centroid of `digit`, `sigma`² I), decoded into `images` (the report's "
    "sampling experiment: the larger sigma, the further from the digit). Any model; a VAE's prior N(0, I) is "
    "`samplePrior`. The same `seed` gives the same images; it is drawn when absent and echoed back.",
    response_model=SampleResult,
    responses={
        **docs.ok_response(
            examples.SAMPLE_RESPONSE,
            png="all samples in one grid (rows of 10).",
            npy="`images` (n x 28 x 28 float32, the default) or `latents`, chosen by `fields`.",
        ),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(SampleRequest, examples.SAMPLE_EXAMPLES) | image_call_parameters(),
)
async def sample(request: Request) -> Response:
    call = image_model_call(request)
    body = await read_json(request, SampleRequest, call.validation_context)
    return await _draw(call, SAMPLING, body.digit, body.sigma, body.n, body.seed)


@v1.post(
    "/models/{name}/prior/sample",
    tags=["generation"],
    summary="Draw new digits from a VAE's prior",
    description="`n` latents drawn from the prior N(0, I) of a VAE, decoded into `images`: what the model "
    "generates from nothing. An auto-encoder has no prior: 404, which names it. The same `seed` gives the same "
    "images; it is drawn when absent and echoed back.",
    response_model=PriorSampleResult,
    responses={
        **docs.ok_response(
            examples.PRIOR_SAMPLE_RESPONSE,
            png="all samples in one grid (rows of 10).",
            npy="`images` (n x 28 x 28 float32, the default) or `latents`, chosen by `fields`.",
        ),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(PriorSampleRequest, examples.PRIOR_SAMPLE_EXAMPLES) | image_call_parameters(),
)
async def sample_prior(request: Request) -> Response:
    call = image_model_call(request)
    model = call.model
    if model.kind != "vae":
        raise ApiError(
            404,
            f"{model.name} is an auto-encoder: it has no prior to sample; sample around a digit with POST "
            f"/v1/models/{model.name}/sample",
        )
    body = await read_json(request, PriorSampleRequest, call.validation_context)
    return await _draw(call, PRIOR_SAMPLING, None, PRIOR_SIGMA, body.n, body.seed)


async def _draw(
    call: ModelCall, rendering: Rendering[Samples], digit: int | None, sigma: float, n: int, seed: int | None
) -> Response:
    """`n` latents around `digit`'s centroid (None: the prior's centre), decoded where the answer shows images."""
    answer = answer_format(call.output, rendering, call.model, bulk=False)
    seed = seed if seed is not None else draw_seed()
    latents = sample_latents(call.model.centroids_cpu, digit, sigma, n, seed).numpy()
    images = await call.engine.decode(call.model, list(latents)) if answer.needs("images") else []
    return answer.answer([Samples(latents, images, digit, sigma, seed)], is_batch=False)


@v1.post(
    "/models/{name}/interpolate",
    tags=["generation"],
    summary="Walk the straight line between two points of the latent space",
    description="`from` and `to` are each a `digit` (its centroid), a `latent`, or an image (`image` base64, or "
    "`pixels` with `scale`; encoded first). The answer has `steps` `images` decoded at evenly spaced points, ends "
    "included, with their `latents` and position `t` (the report's Figs. 5 and 7 as a request).",
    response_model=InterpolateResult,
    responses={
        **docs.ok_response(
            examples.INTERPOLATE_RESPONSE,
            png="the images in one row.",
            npy="`images` (steps x 28 x 28 float32, the default), `latents` or `t`, chosen by `fields`.",
        ),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(InterpolateRequest, examples.INTERPOLATE_EXAMPLES) | image_call_parameters(),
)
async def interpolate(request: Request) -> Response:
    call = image_model_call(request)
    body = await read_json(request, InterpolateRequest, call.validation_context)
    model = call.model
    answer = answer_format(call.output, INTERPOLATION, model, bulk=False)
    ends = {"from": body.start, "to": body.end}
    given = {name: ImageSource.of(end) for name, end in ends.items() if end.is_image}
    images = await load_images(list(given.values()), call.settings, list(given), call.service.decode_pool)
    encoded = iter(await call.engine.encode(model, images) if images else [])
    start, end = (
        torch.from_numpy(next(encoded).latent) if point.is_image else point.fixed_latent(model.centroids_cpu)
        for point in ends.values()
    )
    t, latents = path_positions(body.steps).numpy(), straight_path(start, end, body.steps).numpy()
    path = await call.engine.decode(model, list(latents)) if answer.needs("images") else []
    return answer.answer([Walk(t, latents, path)], is_batch=False)
