"""The HTTP checks scripts/container-test.sh makes against a digitae container.

usage: python scripts/container_check.py ready URL | infer URL [API_KEY] | card URL MODEL | status URL CODE
       | keys URL API_KEY ADMIN_KEY

  ready  wait (up to 180 s) until GET /readyz answers 200
  infer  encode examples/two.png with ae-6 and check the answer is a 2 with a 6-number latent
  card   print MODEL's `trained_at` and `epochs_run` (how the test tells a retrained model from the committed one)
  status check that GET URL answers CODE
  keys   check that /v1 refuses a request without a key (401) or with a wrong one, and serves it with API_KEY; and
         that POST /admin/reload takes ADMIN_KEY
"""

import sys
import time
from pathlib import Path

import httpx

READY_WITHIN_S = 180.0
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "two.png"


def ready(url: str) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/readyz", timeout=5)
            if response.status_code == 200:
                print(f"ok: {url}/readyz 200")
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(1)
    sys.exit(f"{url}/readyz not 200 within {READY_WITHIN_S:.0f} s (last: {last})")


def infer(url: str, api_key: str = "") -> None:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.post(
        f"{url}/v1/models/ae-6/encode", files={"file": EXAMPLE.read_bytes()}, headers=headers, timeout=30
    )
    response.raise_for_status()
    answer = response.json()
    if answer["nearest_digit"] != 2 or len(answer["latent"]) != 6:
        sys.exit(f"encoding {EXAMPLE.name} gave {answer}")
    print(f"ok: {url} encodes {EXAMPLE.name} as a 2")


def card(url: str, model: str) -> None:
    response = httpx.get(f"{url}/v1/models/{model}", timeout=30)
    response.raise_for_status()
    model_card = response.json()["card"]
    print(f"trained_at={model_card['trained_at']} epochs_run={model_card['epochs_run']}")


def status(url: str, code: str) -> None:
    got = httpx.get(url, timeout=10).status_code
    if got != int(code):
        sys.exit(f"GET {url}: {got}, not {code}")


def keys(url: str, api_key: str, admin_key: str) -> None:
    models = f"{url}/v1/models"
    for sent, expected in ((None, 401), ("not-the-key-at-all", 401), (api_key, 200)):
        headers = {"authorization": f"Bearer {sent}"} if sent else {}
        got = httpx.get(models, headers=headers, timeout=10).status_code
        if got != expected:
            sys.exit(f"GET {models} {'with a key' if sent else 'without a key'}: {got}, not {expected}")
    reload = httpx.post(f"{url}/admin/reload", headers={"authorization": f"Bearer {admin_key}"}, timeout=30)
    if reload.status_code != 200:
        sys.exit(f"POST /admin/reload with the admin key: {reload.status_code} {reload.text[:200]}")
    print(f"ok: {url}/v1 refuses requests without a key or with a wrong one (401), serves the key; admin key taken")


if __name__ == "__main__":
    command, *args = sys.argv[1:] or ["--help"]
    commands = {"ready": ready, "infer": infer, "card": card, "status": status, "keys": keys}
    if command not in commands:
        sys.exit(__doc__)
    commands[command](*args)
