"""Rules of a request that pydantic checks in a validator, stated in its JSON schema too, so the OpenAPI document
accepts exactly what the service does: one of several ways of giving an input, at least one of some fields, the
pixel range each `scale` allows, and integers as JSON Schema counts them (6.0 is 6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator

IMAGE_FORMAT = "image-base64"  # the `format` of a JSON image field (an OpenAPI format is open-ended)
PIXEL_RANGES = {"0-1": 1, "0-255": 255}  # the largest pixel value each `scale` allows (as pixels_to_array checks)


def _whole(value: Any) -> Any:
    """6.0 is the integer 6, as JSON Schema counts it; the requests are strict otherwise (no "6", no 6.5)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# After a field's constraints in `Annotated` (so its schema keeps minimum/maximum), or as the whole type.
WHOLE = BeforeValidator(_whole)
WholeNumber = Annotated[int, WHOLE]


def _present(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """`name` given and not null: its declared types, less null."""
    branches = schema["properties"][name].get("anyOf", [schema["properties"][name]])
    types = sorted({branch["type"] for branch in branches if branch.get("type") not in (None, "null")})
    return {"type": types[0] if len(types) == 1 else types}


def exactly_one_of(*groups: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    """`json_schema_extra` stating the rule the model's validator checks, so the schema accepts exactly what the
    service does: a `oneOf` with one branch per way of giving the input, that group's fields present and not null
    and every other group's absent or null (null is the same as absent). `pixels` with `scale` is one branch per
    scale, each with its range of pixel values."""
    names = [name for group in groups for name in group]

    def declare(schema: dict[str, Any]) -> None:
        branches = []
        for group in groups:
            given = {name: _present(schema, name) if name in group else {"type": "null"} for name in names}
            variants: list[dict[str, Any]] = [{}]
            if "scale" in group:
                variants = [
                    {"scale": {"const": scale}, "pixels": {"type": "array", "items": {"items": {"maximum": top}}}}
                    for scale, top in PIXEL_RANGES.items()
                ]
            branches += [{"required": list(group), "properties": given | variant} for variant in variants]
        schema["oneOf"] = branches

    return declare


def at_least_one_of(*names: str) -> Callable[[dict[str, Any]], None]:
    """`json_schema_extra`: an `anyOf` saying at least one of `names` is given and not null."""

    def declare(schema: dict[str, Any]) -> None:
        schema["anyOf"] = [{"required": [name], "properties": {name: _present(schema, name)}} for name in names]

    return declare
