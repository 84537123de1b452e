"""A Python client for digitae: `Client` (sync) and `AsyncClient`, results as numpy arrays, errors as DigitaeError."""

from digitae_client._client import AsyncClient, Client
from digitae_client._wire import DigitaeError, Encoding, ImageLike, Path, Reconstruction, Samples, Verdict, to_pil

__all__ = [
    "AsyncClient",
    "Client",
    "DigitaeError",
    "Encoding",
    "ImageLike",
    "Path",
    "Reconstruction",
    "Samples",
    "Verdict",
    "to_pil",
]
