"""The training package on tiny real runs: split, loss, early stopping, resume, centroids, judge, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, sha256_of
from models.networks import build_model
from tests.support import REPO_ROOT
from training.centroids import compute_centroids, nearest_centroid_accuracy
from training.cli import main
from training.data import DataError
from training.judge import judge, train_judge
from training.split import split_indices
from training.train import batch_loss, make_config, resume_path, train

TINY = {"latent_dim": 2, "channels": (4, 8, 8), "hidden": 16, "batch_size": 32}
TINY_FLAGS = ["--latent-dim", "2", "--channels", "4", "8", "8", "--hidden", "16", "--batch-size", "32"]


def tiny_config(kind: str = "ae", **overrides):
    return make_config(kind, **{**(TINY if kind != "classifier" else {"batch_size": 32}), **overrides})


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


class Interrupt(Exception):
    """Raised from the epoch hook: the run stops as a crash would, after the epoch's state is saved."""


def interrupt_after(epoch: int):
    def hook(record, model) -> None:
        if record["epoch"] == epoch:
            raise Interrupt

    return hook


# -- the split ---------------------------------------------------------------------------------


def test_split_is_seeded_disjoint_and_complete() -> None:
    split = split_indices(1000, seed=3, val_fraction=0.1, test_fraction=0.2)
    assert split.sizes() == {"train": 700, "validation": 100, "test": 200}
    together = np.concatenate([split.train, split.validation, split.test])
    assert sorted(together.tolist()) == list(range(1000))
    again = split_indices(1000, seed=3, val_fraction=0.1, test_fraction=0.2)
    assert all(np.array_equal(getattr(split, p), getattr(again, p)) for p in ("train", "validation", "test"))
    assert not np.array_equal(split.test, split_indices(1000, seed=4, val_fraction=0.1, test_fraction=0.2).test)
    assert split.to_card()["seed"] == 3 and split.to_card()["sizes"]["test"] == 200


@pytest.mark.parametrize("fractions", [(0.0, 0.1), (0.5, 0.5), (0.1, -0.1), (1.2, 0.0)])
def test_split_refuses_fractions_that_leave_a_part_empty(fractions) -> None:
    with pytest.raises(ValueError, match="fraction"):
        split_indices(100, 0, *fractions)


# -- the loss and the loop ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ae", "vae", "classifier"])
def test_loss_falls_over_a_few_steps(tiny_digits, kind: str) -> None:
    torch.manual_seed(0)
    images, labels = tiny_digits.tensors()
    x, y = images[::4], labels[::4]
    model = build_model(kind, 2 if kind != "classifier" else None).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = batch_loss(model, x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


def test_early_stopping_restores_the_best_weights(tiny_digits, tmp_path: Path) -> None:
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    config = tiny_config(lr=0.1, epochs=12, patience=2)

    def snapshot(record, model) -> None:
        snapshots[record["epoch"]] = state_of(model)

    result = train(config, tiny_digits, tmp_path, verbose=False, on_epoch_end=snapshot)
    card = result.card
    val = [r["val_loss"] for r in result.history]
    assert card["stopped_early"] and card["epochs_run"] < config.epochs
    assert card["best_epoch"] == 1 + int(np.argmin(val)) and card["epochs_run"] == card["best_epoch"] + config.patience
    best = snapshots[card["best_epoch"]]
    assert all(torch.equal(best[k], v) for k, v in result.model.state_dict().items())
    last = snapshots[card["epochs_run"]]
    assert not all(torch.equal(last[k], v) for k, v in result.model.state_dict().items())
    assert card["metrics"]["validation"]["mse"] == pytest.approx(min(val))


def test_training_is_deterministic_for_a_seed(tiny_digits, tmp_path: Path) -> None:
    config = tiny_config(epochs=2, augment=1.0)
    first = train(config, tiny_digits, tmp_path / "a", verbose=False)
    second = train(config, tiny_digits, tmp_path / "b", verbose=False)
    assert_same_weights(first.model, second.model)
    assert first.history == second.history
    assert sha256_of(first.path / "weights.safetensors") == sha256_of(second.path / "weights.safetensors")
    other = train(tiny_config(epochs=2, augment=1.0, seed=1), tiny_digits, tmp_path / "c", verbose=False)
    key = "decoder.linear.0.weight"
    assert not torch.equal(other.model.state_dict()[key], first.model.state_dict()[key])


@pytest.mark.parametrize(
    "kind, settings",
    [("vae", {"schedule": "onecycle", "augment": 1.0, "epochs": 5}), ("ae", {"lr": 0.1, "patience": 2, "epochs": 12})],
    ids=["vae-onecycle-augmented", "ae-early-stopped"],
)
def test_an_interrupted_run_resumes_to_the_same_result(tiny_digits, tmp_path: Path, kind: str, settings: dict) -> None:
    config = tiny_config(kind, **settings)
    straight = train(config, tiny_digits, tmp_path / "straight", verbose=False)

    out = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        train(config, tiny_digits, out, verbose=False, on_epoch_end=interrupt_after(2))
    name = straight.path.name
    assert resume_path(out, name).exists() and not (out / name).exists()
    epochs_seen: list[int] = []
    resumed = train(
        config, tiny_digits, out, resume=True, verbose=False, on_epoch_end=lambda r, m: epochs_seen.append(r["epoch"])
    )
    assert epochs_seen[0] == 3  # continued after the last completed epoch
    assert_same_weights(straight.model, resumed.model)
    assert resumed.history == straight.history
    assert resumed.card["best_epoch"] == straight.card["best_epoch"] and resumed.card["resumed"]
    assert resumed.card["metrics"] == straight.card["metrics"]
    assert not resume_path(out, name).exists()
    assert_same_weights(load_checkpoint(resumed.path).network, straight.model)


def test_resume_refuses_a_state_from_other_settings_or_a_damaged_one(tiny_digits, tmp_path: Path) -> None:
    with pytest.raises(Interrupt):
        train(tiny_config(epochs=4, lr=1e-3), tiny_digits, tmp_path, verbose=False, on_epoch_end=interrupt_after(1))
    state = resume_path(tmp_path, "ae-2")
    with pytest.raises(CheckpointError, match=r"other settings.*lr 0\.001 there, 0\.002 here") as caught:
        train(tiny_config(epochs=4, lr=2e-3), tiny_digits, tmp_path, resume=True, verbose=False)
    assert caught.value.path == state
    state.write_bytes(state.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a readable training state") as caught:
        train(tiny_config(epochs=4, lr=1e-3), tiny_digits, tmp_path, resume=True, verbose=False)
    assert caught.value.path == state


def test_a_run_killed_mid_way_keeps_the_old_checkpoint_and_resumes(tiny_npz: Path, tmp_path: Path) -> None:
    """SIGKILL (no clean-up at all) after the first epoch's state: the previous checkpoint stays whole."""
    command = [sys.executable, "-m", "training", "train", "--data", str(tiny_npz), "--out", str(tmp_path), *TINY_FLAGS]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    first = subprocess.run([*command, "--epochs", "1"], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    old_sha = sha256_of(tmp_path / "ae-2" / "weights.safetensors")

    long_run = [*command, "--epochs", "60", "--patience", "60", "--seed", "1"]
    state = resume_path(tmp_path, "ae-2")
    process = subprocess.Popen(long_run, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"

    old = load_checkpoint(tmp_path / "ae-2")
    assert old.card["epochs_run"] == 1 and sha256_of(old.path / "weights.safetensors") == old_sha
    assert list_checkpoints(tmp_path) == [old.path]
    resumed = subprocess.run([*long_run, "--resume"], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    card = load_checkpoint(tmp_path / "ae-2").card
    assert card["resumed"] and card["epochs_run"] == 60 and card["config"]["seed"] == 1
    assert not state.exists()


# -- centroids and the judge -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_centroids_equal_the_mean_encodings_computed_directly(tiny_digits, tmp_path: Path, kind: str) -> None:
    result = train(tiny_config(kind, epochs=2), tiny_digits, tmp_path, verbose=False)
    card = result.card
    images, labels = tiny_digits.tensors()
    recorded = card["split"]
    split = split_indices(len(images), recorded["seed"], recorded["val_fraction"], recorded["test_fraction"])
    model = load_checkpoint(result.path).network
    with torch.no_grad():
        codes = model.encoder(images[split.train])[:, :2]  # the AE's code, or the VAE's mu (first half)
    loaded = load_checkpoint(result.path)
    for digit in range(10):
        mine = codes[labels[split.train] == digit]
        torch.testing.assert_close(loaded.centroids[digit], mine.mean(dim=0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(loaded.spread[digit], mine.std(dim=0, correction=0), rtol=1e-5, atol=1e-6)
    test_x, test_y = images[split.test], labels[split.test]
    with torch.no_grad():
        nearest = torch.cdist(model.embed(test_x), loaded.centroids).argmin(dim=1)
    expected = float((nearest == test_y).float().mean())
    assert nearest_centroid_accuracy(model, loaded.centroids, test_x, test_y) == pytest.approx(expected)
    assert card["metrics"]["test_split"]["nearest_centroid_accuracy"] == pytest.approx(expected)


def test_centroids_need_every_digit(tiny_digits) -> None:
    images, labels = tiny_digits.tensors()
    with pytest.raises(ValueError, match="digit 9"):
        compute_centroids(build_model("ae", 2), images[labels < 9], labels[labels < 9])


def test_the_judge_trains_saves_and_names_digits(tiny_digits, tmp_path: Path) -> None:
    result = train_judge(tiny_digits, tmp_path, test_data=tiny_digits, epochs=3, batch_size=32, verbose=False)
    loaded = load_checkpoint(result.path)
    assert loaded.name == "classifier" and loaded.kind == "classifier" and loaded.centroids is None
    assert "architecture" not in loaded.card["config"] and loaded.card["config"]["augment"] == 1.0
    metrics = loaded.card["metrics"]
    assert set(metrics["heldout"]) == {"images", "accuracy", "cross_entropy"}
    images, labels = tiny_digits.tensors()
    digits, confidence = judge(loaded.network, images)
    assert digits.shape == confidence.shape == (200,) and ((confidence > 0) & (confidence <= 1)).all()
    assert metrics["heldout"]["accuracy"] == pytest.approx(float((digits == labels).float().mean()))


# -- the command line ------------------------------------------------------------------------------


def test_help_documents_every_command() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "training", "--help"]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0
    for name in ("train", "train-judge", "sweep", "report"):
        assert name in done.stdout


@pytest.mark.parametrize("command", ["train", "train-judge", "sweep", "report"])
def test_each_command_has_its_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert "--test-data" in capsys.readouterr().out


def test_a_tiny_train_runs_end_to_end(tiny_npz: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "training", "train", "--kind", "vae", *TINY_FLAGS, "--data", str(tiny_npz),
        "--test-data", f"{tiny_npz}:train", "--epochs", "2", "--out", str(tmp_path), "--name", "tiny",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "tiny: 2 epochs" in done.stdout and " s on cpu" in done.stdout and "heldout mse" in done.stdout
    assert "tiny epoch 2/2" in done.stderr  # one log line per epoch when stderr is not a terminal
    card = load_checkpoint(tmp_path / "tiny").card
    assert card["kind"] == "vae" and card["data"]["kind"] == "npz:train" and card["metrics"]["heldout"]["images"] == 200


def test_sweep_trains_every_named_model(tiny_npz: Path, tmp_path: Path) -> None:
    argv = ["sweep", "--latent-dims", "2", "3", "--vae-latent-dims", "2", "--skip-judge", "--epochs", "1", "--quiet"]
    argv += ["--channels", "4", "8", "8", "--hidden", "16", "--data", str(tiny_npz), "--out", str(tmp_path)]
    assert main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ae-2", "ae-3", "vae-2"]
    assert load_checkpoint(tmp_path / "ae-3").card["split"] == load_checkpoint(tmp_path / "vae-2").card["split"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--latent-dim", "2", "--data", "no/such/file.npz"], "error: no/such/file.npz: no such file"),
        (["train", "--latent-dim", "2", "--test-data", "missing.mat"], "error: missing.mat: no such file"),
        (["train", "--kind", "vae"], "--latent-dim is required"),
        (["train", "--latent-dim", "2", "--val-fraction", "1.5"], "validation fraction"),
        (["train", "--latent-dim", "0"], "positive latent dimension"),
        (["train", "--kind", "classifier", "--channels", "4", "8", "8"], "--channels do not apply"),
        (["train", "--kind", "gan"], "invalid choice"),
        (["train", "--latent-dim", "two"], "invalid int value"),
        (["train", "--latent-dim", "2", "--device", "tpu"], "unknown device"),
        (["report", "--models", "no/such/folder"], "train them first"),
    ],
)
def test_cli_errors_exit_2_with_a_clear_message(argv: list[str], message: str, capsys, tmp_path: Path) -> None:
    code: str | int | None
    try:
        code = main([*argv, "--out", str(tmp_path / "out")])
    except SystemExit as exited:  # argparse's own errors
        code = exited.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_reports_a_damaged_resume_file(tiny_npz: Path, tmp_path: Path, capsys) -> None:
    resume_path(tmp_path, "ae-2").write_bytes(b"garbage")
    code = main(["train", *TINY_FLAGS, "--data", str(tiny_npz), "--out", str(tmp_path), "--resume", "--quiet"])
    assert code == 2 and ".ae-2.resume.pt: not a readable training state" in capsys.readouterr().err


def test_data_too_small_to_split_is_a_data_error(tiny_digits, tmp_path: Path) -> None:
    from training.data import Digits

    few = Digits(tiny_digits.images[:5], tiny_digits.labels[:5], {"kind": "npz:train"})
    with pytest.raises(DataError, match="too few"):
        train(tiny_config(epochs=1), few, tmp_path, verbose=False)
