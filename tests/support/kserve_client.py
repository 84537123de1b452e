"""The kserve SDK's InferenceRESTClient against digitae's /v2, run by tests/service/api/test_v2_kserve.py with the
python of the SDK's own venv (`make test` builds .venv/kserve: its pins need not match the project's lock), isolated
(`-I`: this folder's http.py would shadow the standard library's), so it imports nothing of the repository:
`python -I kserve_client.py URL MODEL IMAGES.npy` prints what the client got, as JSON, for the test to compare."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput


async def main(url: str, model: str, images: np.ndarray) -> dict[str, Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60))
    seen: dict[str, Any] = {
        "live": await client.is_server_live(url),
        "ready": await client.is_server_ready(url),
        "model_ready": await client.is_model_ready(url, model),
        "unknown_model_ready": await client.is_model_ready(url, "no-such-model"),
    }
    for binary in (False, True):
        tensor = InferInput("images", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images, binary_data=binary)
        outputs = [RequestedOutput(name, {"binary_data": binary}) for name in ("latent", "reconstruction", "mse")]
        request = InferRequest(model, [tensor], request_id=f"kserve-{binary}", request_outputs=outputs)
        response = await client.infer(url, request, model_name=model)
        seen["binary" if binary else "json"] = {
            "id": response.id,
            "outputs": {o.name: {"datatype": o.datatype, "values": o.as_numpy().tolist()} for o in response.outputs},
        }
    bad = InferInput("images", [1, 27, 28], "UINT8")
    bad.set_data_from_numpy(images[:1, :27], binary_data=True)
    try:
        await client.infer(url, InferRequest(model, [bad]), model_name=model)
        seen["error"] = None
    except httpx.HTTPStatusError as error:
        seen["error"] = {"status": error.response.status_code, "message": str(error)}
    await client.close()
    return seen


if __name__ == "__main__":
    base_url, model_name, path = sys.argv[1:4]
    print(json.dumps(asyncio.run(main(base_url, model_name, np.load(path)))))
