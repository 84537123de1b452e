"""Checkpoint writes on a really full disk (a tiny tmpfs) say so and keep the old checkpoint; what training writes
is readable by another user as the umask allows."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from models.checkpoint import centroids_payload, load_checkpoint, save_checkpoint
from models.networks import NUM_DIGITS, Architecture, build_model
from models.storage import DiskFullError, atomic_torch_save, atomic_write_bytes
from training import cli

TMPFS_BYTES = 256 * 1024  # room for one tiny checkpoint (about 20 KB) and the filler that leaves no room for more
TINY = Architecture(channels=(4, 8, 8), hidden=16)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real tmpfs of TMPFS_BYTES mounted for the test (needs root and mount rights: skipped without them)."""
    mount_point = tmp_path / "tiny-disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount_point)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
def umask() -> Iterator[None]:
    """The test sets the umask itself; the process's own is restored after."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _fill(disk: Path, leave: int) -> None:
    """Take all the free space of `disk` but `leave` bytes."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * max(free - leave, 0))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _small_vae() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("vae", 2, TINY)


def _save(folder: Path, epochs_run: int) -> Path:
    centroids = centroids_payload(torch.zeros(NUM_DIGITS, 2), torch.ones(NUM_DIGITS, 2), [1] * NUM_DIGITS)
    return save_checkpoint(folder, _small_vae(), {"epochs_run": epochs_run}, centroids=centroids)


def test_a_checkpoint_that_does_not_fit_names_the_full_disk_and_the_old_one_still_loads(tiny_disk: Path) -> None:
    folder = _save(tiny_disk / "vae-2", epochs_run=1)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    _fill(tiny_disk, leave=4096)
    with pytest.raises(DiskFullError) as caught:
        _save(folder, epochs_run=2)
    needed = sum(len(content) for content in before.values())
    message = str(caught.value)
    assert message.startswith(f"{folder}: the disk is full: the write needs ")
    assert caught.value.needed > needed - 100 and "bytes are free there" in message  # about one checkpoint's size
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert load_checkpoint(folder).card["epochs_run"] == 1
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "vae-2"]  # no staging folder left behind


def test_training_state_on_a_full_disk_says_so_instead_of_an_iostream_error(tiny_disk: Path) -> None:
    target = tiny_disk / ".vae-2.resume.pt"
    atomic_torch_save(target, {"epoch": 1})
    previous = target.read_bytes()
    _fill(tiny_disk, leave=4096)
    with pytest.raises(DiskFullError, match=r"the disk is full: the write needs [\d,]+ bytes") as caught:
        atomic_torch_save(target, {"epoch": 2, "model": _small_vae().state_dict()})
    assert caught.value.path == target
    assert target.read_bytes() == previous
    assert sorted(p.name for p in tiny_disk.iterdir()) == [".vae-2.resume.pt", "filler"]


def test_training_on_a_full_disk_exits_with_one_clear_error_line(
    tiny_disk: Path, tiny_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(tiny_disk, leave=8192)
    argv = ["train", "--kind", "ae", "--latent-dim", "2", "--epochs", "1", "--channels", "4", "8", "8",
            "--hidden", "16", "--data", str(tiny_npz), "--out", str(tiny_disk), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: {tiny_disk}/") and "the disk is full" in error
    assert "iostream" not in error


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize(("mask", "file_mode", "folder_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_checkpoints_and_state_get_the_modes_the_umask_allows(
    tmp_path: Path, mask: int, file_mode: int, folder_mode: int
) -> None:
    os.umask(mask)
    folder = _save(tmp_path / "vae-2", epochs_run=1)
    assert _mode(folder) == folder_mode
    assert {p.name: _mode(p) for p in folder.iterdir()} == {
        name: file_mode for name in ("weights.safetensors", "centroids.json", "card.json")
    }
    atomic_torch_save(tmp_path / "state.pt", {"epoch": 1})
    atomic_write_bytes(tmp_path / "notes.txt", b"x")
    assert _mode(tmp_path / "state.pt") == _mode(tmp_path / "notes.txt") == file_mode
