"""Files and folders written whole or not at all, readable as the umask allows, and a full disk named as such.

A write goes to a temporary name beside its target, is synced, and is renamed into place: readers see the old
file (or folder) or the new one, never half, and a failed write leaves the old one intact and no debris.

Temporary files and folders are created with the modes `open` and `mkdir` give by default (0666 and 0777 less the
process's umask; with the usual umask 022, 0644 and 0755), not `tempfile`'s private 0600 and 0700: a checkpoint
that training writes must be readable by a service running as another user.

A full disk surfaces as `DiskFullError`, which says which path, how many bytes the write needed and how many were
free, instead of what the layer below says (torch's C++ streams: "basic_ios::clear: iostream error").
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # no space left; the user's disk quota exceeded
TEMPORARY_NAME_TRIES = 100


class DiskFullError(OSError):
    """A write failed because its filesystem is full; what was there before is intact."""

    def __init__(self, path: Path, needed: int, free: int | None) -> None:
        self.path, self.needed, self.free = path, needed, free
        room = f"{free:,} bytes are free there" if free is not None else "the free space could not be read"
        self.message = (
            f"{path}: the disk is full: the write needs {needed:,} bytes and {room}; the previous version is "
            "intact: free some space (or write elsewhere) and run the command again"
        )
        super().__init__(errno.ENOSPC, self.message, str(path))

    def __str__(self) -> str:
        return self.message


@contextmanager
def naming_a_full_disk(path: Path, needed: int) -> Iterator[None]:
    """Turn an out-of-space OSError raised inside into a `DiskFullError` for `path`."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        if exc.errno not in FULL_DISK_ERRNOS:
            raise
        try:
            free: int | None = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        raise DiskFullError(path, needed, free) from exc


def sha256_of(path: Path, check: Callable[[int], None] | None = None) -> str:
    """The file's sha256. `check(bytes read so far)`, called after each MiB read, may raise to stop early (a
    bound on the size or the time of hashing a file that may be hostile)."""
    digest = hashlib.sha256()
    read = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            read += len(chunk)
            if check is not None:
                check(read)
            digest.update(chunk)
    return digest.hexdigest()


def _new_name(folder: Path, stem: str, create: Callable[[Path], None]) -> Path:
    """A fresh hidden `.stem.<random>.tmp` in `folder`, created by `create` (which fails if it exists)."""
    for _ in range(TEMPORARY_NAME_TRIES):
        candidate = folder / f".{stem}.{secrets.token_hex(6)}.tmp"
        try:
            create(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(folder / f".{stem}.*.tmp"))


def _create_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies, as for open()


def write_synced(path: Path, data: bytes) -> None:
    """Write `data` to `path` and sync it to the disk (a plain write: for files not yet visible to readers)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with naming_a_full_disk(path, len(data)):
        tmp = _new_name(path.parent, path.name, _create_file)
        try:
            write_synced(tmp, data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def atomic_torch_save(path: Path, obj: Any) -> None:
    """torch.save, serialised in memory first so that a failed write is an OSError that names its cause (torch's
    own file writes report a full disk as "basic_ios::clear: iostream error"); then written atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_folder(directory: Path, files: dict[str, bytes]) -> None:
    """Write a folder holding exactly `files` (name -> content) at `directory`, replacing any old one whole.

    The files are written into a hidden staging folder beside it, which is then renamed into place; a crash or a
    full disk leaves the old folder (or none) and no staging folder behind.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with naming_a_full_disk(directory, sum(len(content) for content in files.values())):
        staging = _new_name(directory.parent, directory.name, lambda p: p.mkdir(0o777))
        try:
            for name, content in files.items():
                write_synced(staging / name, content)  # plain writes: only the final rename makes them visible
            _swap_into_place(staging, directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _swap_into_place(staging: Path, directory: Path) -> None:
    """Rename the finished staging folder to `directory`; the old one is removed after."""
    old = None
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(staging, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def json_file_bytes(data: Any) -> bytes:
    """`data` as indented JSON with a final newline: how every checkpoint JSON file is written."""
    return (json.dumps(data, indent=2) + "\n").encode()


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, json_file_bytes(data))
