"""Adding files to a saved checkpoint in place (an atlas, written by `python -m training atlas`), with their hashes in
its card. Each write is atomic, and a damaged checkpoint is never given a fresh hash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.checkpoint import CARD_FILE, WEIGHTS_FILE, CheckpointError, read_card, verify_files
from models.storage import atomic_write_bytes, atomic_write_json, sha256_of


def add_files(directory: Path | str, files: dict[str, bytes]) -> dict[str, Any]:
    """Add files (name -> content) to an existing, verified checkpoint and list their sha256 in its card.

    The other files are not touched. Each file is written atomically before the card names it, so a crash
    leaves either the old card (and an unlisted file, ignored) or the new one.
    """
    directory = Path(directory)
    for name in files:
        if Path(name).name != name or name in (CARD_FILE, WEIGHTS_FILE):
            raise CheckpointError(directory / name, "not a file a checkpoint can take")
    card = read_card(directory)
    verify_files(directory, card)  # never bless a damaged checkpoint with a fresh hash
    for name, content in files.items():
        atomic_write_bytes(directory / name, content)
        card["files"][name] = sha256_of(directory / name)
    atomic_write_json(directory / CARD_FILE, card)
    return card
