"""Content negotiation: the Accept header picks JSON or PNG the way HTTP says."""

from __future__ import annotations

import pytest

from service.codec.render import negotiate


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("image/png", "image/png"),
        ("image/*", "image/png"),
        ("application/json, image/png", "application/json"),
        ("application/json;q=0.5, image/png", "image/png"),
        ("image/png;q=0, */*", "application/json"),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "application/json"),
        ("text/html", None),
        ("application/json;q=0", None),
        ("garbage", None),
    ],
)
def test_negotiate_picks_the_preferred_offer(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept, ("application/json", "image/png")) == expected
