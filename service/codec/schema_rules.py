"""Rules of a request that pydantic checks in a validator, stated in its JSON schema too, so the OpenAPI document
accepts exactly what the service does: requests are strict (`RequestModel`), one of several ways of giving an input,
at least one of some fields, the pixel range each `scale` allows, and integers as JSON Schema counts them (6.0 is 6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

IMAGE_FORMAT = "image-base64"  # the `format` of a JSON image field (an OpenAPI format is open-ended)
PIXEL_RANGES = {"0-1": 1, "0-255": 255}  # the largest pixel value each `scale` allows (as pixels_to_array checks)
NULL = {"type": "null"}  # a property's schema for "absent or null"


def _whole(value: Any) -> Any:
    """6.0 is the integer 6, as JSON Schema counts it; the requests are strict otherwise (no "6", no 6.5)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# After a field's constraints in `Annotated` (so its schema keeps minimum/maximum), or as the whole type.
WHOLE = BeforeValidator(_whole)
WholeNumber = Annotated[int, WHOLE]
MAX_SEED = 2**63 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED), WHOLE]
Digit = Annotated[int, Field(ge=0, le=9), WHOLE]


class RequestModel(BaseModel):
    """Every request body: unknown fields, NaN and infinity refused, no coercion (no "6" for 6)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, populate_by_name=False)


def _present(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """`name` given and not null: its declared schema less null."""
    branches = schema["properties"][name].get("anyOf", [schema["properties"][name]])
    given = [{k: v for k, v in branch.items() if k not in ("title", "description")} for branch in branches]
    given = [branch for branch in given if branch.get("type") != "null"]
    return given[0] if len(given) == 1 else {"anyOf": given}


def exactly_one_of(*groups: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    """`json_schema_extra` stating the rule the model's validator checks: exactly one group of fields is given (not
    null; null is the same as absent), and a group is given whole. Written as `not` any of the ways to break it, which
    validators and schemathesis honour and client generators leave alone (their types stay one model with optional
    fields). `pixels` with `scale`: each scale's range of pixel values too."""

    def declare(schema: dict[str, Any]) -> None:
        def given(*names: str) -> dict[str, Any]:
            return {"required": list(names), "properties": {name: _present(schema, name) for name in names}}

        firsts = [group[0] for group in groups]
        broken = [given(a, b) for i, a in enumerate(firsts) for b in firsts[i + 1 :]]  # two ways at once
        broken.append({"properties": {name: NULL for name in firsts}})  # none
        for group in groups:  # a group given in part
            for name in group[1:]:
                broken.append(given(name) | {"properties": {name: _present(schema, name), group[0]: NULL}})
                broken.append(given(group[0]) | {"properties": {group[0]: _present(schema, group[0]), name: NULL}})
            if "scale" in group:
                broken += pixels_over_their_scale()
        schema["not"] = {"anyOf": broken}

    return declare


def pixels_over_their_scale() -> list[dict[str, Any]]:
    """The requests whose `pixels` exceed the range their `scale` allows (as pixels_to_array checks), one schema
    each, for a `not`."""
    return [
        {
            "required": ["pixels", "scale"],
            "properties": {
                "scale": {"const": scale},
                "pixels": {"type": "array", "contains": {"type": "array", "contains": {"exclusiveMinimum": top}}},
            },
        }
        for scale, top in PIXEL_RANGES.items()
    ]


def at_least_one_of(*names: str) -> Callable[[dict[str, Any]], None]:
    """`json_schema_extra`: not all of `names` absent or null (written as `not`, like `exactly_one_of`)."""

    def declare(schema: dict[str, Any]) -> None:
        schema["not"] = {"properties": {name: NULL for name in names}}

    return declare


IMAGE_FORMS = (("image",), ("pixels", "scale"))  # the two ways to send one image


def one_image_form(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The JSON schema of a model taking one image: exactly one of `{image}` or `{pixels, scale}`, a `oneOf` of two
    closed objects (each with the model's other fields), which is what the validators check and what client
    generators type as a union; and `pixels` within their `scale`'s range (a `not`, which generators leave alone)."""
    properties = schema.pop("properties")
    others = {name: value for name, value in properties.items() if name not in ("image", "pixels", "scale")}
    for key in ("type", "required", "additionalProperties"):
        schema.pop(key, None)
    schema["oneOf"] = [
        {
            "type": "object",
            "title": f"{model.__name__}With{form[0].title()}",
            "properties": {**{name: _not_null(properties[name]) for name in form}, **others},
            "required": list(form),
            "additionalProperties": False,
        }
        for form in IMAGE_FORMS
    ]
    schema["not"] = {"anyOf": pixels_over_their_scale()}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field's schema (`anyOf: [X, null]`) as X, for a form in which the field is required."""
    outer = {key: value for key, value in schema.items() if key not in ("anyOf", "default", "title")}
    present = [branch for branch in schema.get("anyOf", [schema]) if branch.get("type") != "null"]
    return {**present[0], **outer}
