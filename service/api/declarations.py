"""What the /v1 routes declare alike: the error statuses they answer, each route's `fields`, and how a deprecated
request form is answered."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from service.codec.render import (
    CLASSIFY_FIELDS,
    DECODE_FIELDS,
    ENCODE_FIELDS,
    INTERPOLATE_FIELDS,
    PRIOR_SAMPLE_FIELDS,
    RECONSTRUCT_FIELDS,
    SAMPLE_FIELDS,
)

READ_ERRORS = (401, 404, 406, 422, 503)
BODY_ERRORS = (401, 404, 406, 413, 415, 422, 503)
# each inference route's answer fields, for `fields` (written into the OpenAPI document by the app)
FIELDS_BY_PATH = {
    "/v1/classify": CLASSIFY_FIELDS,
    "/v1/classify/batch": CLASSIFY_FIELDS,
    "/v1/models/{name}/encode": ENCODE_FIELDS,
    "/v1/models/{name}/encode/batch": ENCODE_FIELDS,
    "/v1/models/{name}/reconstruct": RECONSTRUCT_FIELDS,
    "/v1/models/{name}/reconstruct/batch": RECONSTRUCT_FIELDS,
    "/v1/models/{name}/decode": DECODE_FIELDS,
    "/v1/models/{name}/decode/batch": DECODE_FIELDS,
    "/v1/models/{name}/sample": SAMPLE_FIELDS,
    "/v1/models/{name}/prior/sample": PRIOR_SAMPLE_FIELDS,
    "/v1/models/{name}/interpolate": INTERPOLATE_FIELDS,
}


def successor_of(request: Request, response: Response) -> Response:
    """Mark an answer to a single operation's deprecated batch form (a batch or `.npy` body, still answered as
    before for one release) with its successor: the operation's `/batch` route (RFC 9745 and RFC 8288)."""
    response.headers["Deprecation"] = "true"
    response.headers["Link"] = f'<{request.url.path}/batch>; rel="successor-version"'
    return response
