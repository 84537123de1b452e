"""The model routes: list, describe, and the atlas of held-out codes (the explorer's map)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.api import examples
from service.api import openapi as docs
from service.api.declarations import BODY_ERRORS, READ_ERRORS, successor_of
from service.api.deps import (
    Fields,
    JsonModelCall,
    JsonServiceDep,
    Service,
    query_fields,
    served_judge,
)
from service.api.errors import error_responses
from service.catalog.registry import ServedJudge
from service.codec.answers import Atlas, ClassifyBatchResult, ClassifyResult, ModelDetail, ModelSummary
from service.codec.errors import ApiError
from service.codec.inputs import ImageSource, batch_names, load_images, read_image_batch, read_image_request
from service.codec.render import (
    CLASSIFY_FIELDS,
    json_response,
    model_detail,
    model_summary,
    selected_fields,
    verdict_view,
)
from service.codec.schemas import ClassifyBatchRequest, ClassifyRequest

v1 = APIRouter(prefix="/v1")  # create_app adds the API-key check when keys are set


@v1.get(
    "/models",
    tags=["models"],
    summary="List the models",
    description="Every auto-encoder being served: its `name` (use it in the other routes), `version` (what "
    "`X-Model-Version` names in every answer), `trained_at`, `kind` (`ae` or `vae`), `latent_dim` and the metrics "
    "from its model card. The digit classifier that judged the experiments is served by `POST /v1/classify`, not "
    "as a model, so it is not listed.",
    response_model=list[ModelSummary],
    responses=error_responses(401, 406),
)
async def list_models(service: JsonServiceDep) -> Response:
    return json_response([model_summary(m) for m in service.registry.models.values()])


@v1.get(
    "/models/{name}",
    tags=["models"],
    summary="Describe one model",
    description="The model's summary plus its per-digit `centroids` (digit -> mean latent vector, what "
    "`nearest_digit` and `/sample` use), the `spread` around them, and its whole model card.",
    response_model=ModelDetail,
    responses=error_responses(*READ_ERRORS),
)
async def describe_model(call: JsonModelCall) -> Response:
    return json_response(model_detail(call.model))


@v1.get(
    "/models/{name}/atlas",
    tags=["models"],
    summary="The held-out digits' codes (the explorer's map)",
    description="Where real digits the model never trained on land in its latent space: `labels` (each point's "
    "true digit) and `codes` (its latent vector; a VAE's posterior mean mu), 200 of each digit, and the `source` of "
    "the digits (the real MNIST test set when training had it, else the held-out validation and test parts of the "
    "training data). Written by training into the checkpoint (atlas.json, covered by the card's sha256); "
    "`python -m training atlas` adds it to an older checkpoint. 404 when the checkpoint has none.",
    response_model=Atlas,
    responses=error_responses(*READ_ERRORS),
)
async def model_atlas(call: JsonModelCall) -> Response:
    if call.model.atlas is None:
        raise ApiError(
            404,
            f"{call.model.name} has no atlas (its checkpoint predates atlas.json): "
            "run 'python -m training atlas <checkpoints folder>' to add one without retraining",
        )
    return json_response(call.model.atlas)


CLASSIFY_DESCRIPTION = (
    "The digit classifier that judges the report's experiments: the `digit` it sees, its `confidence` and all ten "
    "`probabilities`. Use it on decoded or sampled images to ask whether a point of the latent space looks like a "
    "digit. `fields` trims the answer. 404 when no classifier checkpoint is served."
)


@v1.post(
    "/classify",
    tags=["inference"],
    summary="Name the digit in an image",
    description=f"One image -> its verdict. {CLASSIFY_DESCRIPTION} The same inputs as `/encode`: JSON `image` or "
    "`pixels`, a multipart `file`, or the file itself as the body. Several images: `POST /v1/classify/batch`; a "
    "batch (`images`) sent here is still answered as before, for one release, with `Deprecation: true` and a "
    "`Link` to it.",
    response_model=ClassifyResult,
    responses={**docs.ok_response(examples.CLASSIFY_RESPONSE, deprecated_forms=True), **error_responses(*BODY_ERRORS)},
    openapi_extra=docs.request_body(ClassifyRequest, examples.ENCODE_EXAMPLES, form_fields={}, raw_images=True),
)
async def classify(request: Request, service: JsonServiceDep, fields: Fields = None) -> Response:
    judge, want = _judging(request, service)
    body, sources = await read_image_request(
        request, ClassifyRequest, ClassifyBatchRequest, {"settings": service.settings}
    )
    views = await _verdicts(service, judge, want, sources, body.is_batch)
    response = json_response({"results": views} if body.is_batch else views[0])
    return successor_of(request, response) if body.is_batch else response


@v1.post(
    "/classify/batch",
    tags=["inference"],
    summary="Name the digit in each image",
    description=f"Each image -> its verdict, as `/classify` answers it. {CLASSIFY_DESCRIPTION} Send JSON `images` "
    "(up to max_batch, each `{image}` or `{pixels, scale}`), answered with `results` in order.",
    response_model=ClassifyBatchResult,
    responses={**docs.ok_response(examples.batch_of(examples.CLASSIFY_RESPONSE)), **error_responses(*BODY_ERRORS)},
    openapi_extra=docs.request_body(ClassifyBatchRequest, examples.ENCODE_BATCH_EXAMPLES),
)
async def classify_batch(request: Request, service: JsonServiceDep, fields: Fields = None) -> Response:
    judge, want = _judging(request, service)
    _, sources = await read_image_batch(request, ClassifyBatchRequest, {"settings": service.settings})
    return json_response({"results": await _verdicts(service, judge, want, sources, True)})


def _judging(request: Request, service: Service) -> tuple[ServedJudge, frozenset[str]]:
    """The classifier (its name and version in the answer's X-Model-* headers) and the fields to answer, checked
    before the body is read."""
    judge = served_judge(service)
    request.scope["state"]["model"] = judge
    fields = query_fields(request)  # also `fields=a&fields=b`, as generated clients send a list
    return judge, selected_fields(fields, CLASSIFY_FIELDS) if fields is not None else frozenset(CLASSIFY_FIELDS)


async def _verdicts(
    service: Service, judge: ServedJudge, want: frozenset[str], sources: list[ImageSource], is_batch: bool
) -> list[dict[str, Any]]:
    images = await load_images(sources, service.settings, batch_names(len(sources), is_batch), service.decode_pool)
    return [verdict_view(v, want) for v in await service.engine.classify(judge, images)]
