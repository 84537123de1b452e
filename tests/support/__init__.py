"""What the tests share: `from tests.support import ...` (load.py's names: `from tests.support.load import ...`).

checkpoints.py   build_checkpoints: tiny untrained checkpoints (TINY_MODELS, and the judge)
server.py        ServerProcess: a real `python -m service` on a free port; run_service; REPO_ROOT
images.py        the example digit, PNG bytes, base64, decoding answers
http.py          assert_error: the one error shape
load.py          run_load and the server's processes, for the reliability tests
attacks.py       HealthProbe, RssSampler, raw sockets: what an attack costs the server (`from tests.support.attacks`)
"""

from tests.support.checkpoints import TINY, TINY_MODELS, build_checkpoints
from tests.support.http import assert_error
from tests.support.images import b64, decode_png, example_digit, png_bytes, shifted_digits
from tests.support.server import REPO_ROOT, ServerProcess, StartServer, free_port, run_service

__all__ = [
    "REPO_ROOT",
    "TINY",
    "TINY_MODELS",
    "ServerProcess",
    "StartServer",
    "assert_error",
    "b64",
    "build_checkpoints",
    "decode_png",
    "example_digit",
    "free_port",
    "png_bytes",
    "run_service",
    "shifted_digits",
]
