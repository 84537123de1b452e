"""Optional API keys: with DIGITAE_API_KEYS set, every /v1 route needs `Authorization: Bearer <key>`; the admin
routes need DIGITAE_ADMIN_KEY (and are off without it)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.codec.errors import ApiError

bearer = HTTPBearer(
    auto_error=False,
    description="Needed only when the service is started with DIGITAE_API_KEYS; paste one of the keys.",
)
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def key_matches(given: str, keys: list[bytes]) -> bool:
    """Compare with every key (UTF-8 bytes) in constant time, without stopping at a match (no timing hint).

    HTTP headers are bytes, which the server hands over decoded as Latin-1: encoding back to Latin-1 gives
    the bytes the client sent, so a key outside ASCII matches when sent as UTF-8 (as curl and browsers do)."""
    try:
        candidate = given.encode("latin-1")
    except UnicodeEncodeError:  # not from a header (a direct call): it is text already
        candidate = given.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key)
    return matched


async def require_api_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> None:
    """Only a keyed service runs this check (create_app adds it when DIGITAE_API_KEYS is set)."""
    keys: list[bytes] = request.app.state.api_keys
    if credentials is None:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", headers=CHALLENGE)
    if not key_matches(credentials.credentials, keys):
        raise ApiError(401, "wrong API key", headers=CHALLENGE)


async def require_admin_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> None:
    """The admin routes take DIGITAE_ADMIN_KEY, not an API key: no key is 401 (with the challenge), another key 403.
    Without that setting they are off, and say so with 403 to any key (the OpenAPI document declares them whatever
    the settings: one contract)."""
    key: bytes = request.app.state.admin_key
    if credentials is None:
        raise ApiError(401, "missing admin key: send 'Authorization: Bearer <DIGITAE_ADMIN_KEY>'", headers=CHALLENGE)
    if not key:
        raise ApiError(403, "admin operations are off: the service was started without DIGITAE_ADMIN_KEY")
    if not key_matches(credentials.credentials, [key]):
        raise ApiError(403, "wrong admin key")


async def has_admin_key(request: Request) -> bool:
    """Whether the request carries the admin key (for routes open to all that show the admin more, like /readyz)."""
    key: bytes = request.app.state.admin_key
    credentials = await bearer(request)
    return bool(key) and credentials is not None and key_matches(credentials.credentials, [key])
