"""The fair AE/VAE comparison: the beta-VAE, the new measures (scaled sampling, generation scores, the judge's
Fréchet distance, path smoothness, seeds), and the reproducibility promise, each on tiny inputs."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from models.checkpoint import load_checkpoint, sha256_of
from models.losses import vae_terms
from models.networks import NUM_DIGITS, Architecture, AutoEncoder, build_model
from tests.support import REPO_ROOT
from training import experiments as ex
from training.config import default_name, make_config
from training.train import batch_loss, validation_loss

TINY_FLAGS = ["--channels", "4", "8", "8", "--hidden", "16", "--batch-size", "32", "--epochs", "2", "--quiet"]


# -- the beta-VAE ------------------------------------------------------------------------------


def test_beta_is_a_vae_setting_recorded_in_its_config_and_name() -> None:
    config = make_config("vae", latent_dim=2, beta=4)
    assert config.to_dict()["beta"] == 4.0
    assert default_name(config) == "vae-2-b4"
    assert default_name(make_config("vae", latent_dim=6, beta=0.5)) == "vae-6-b0.5"
    assert default_name(make_config("vae", latent_dim=6)) == "vae-6"  # the plain VAE keeps its name
    assert "beta" not in make_config("ae", latent_dim=2).to_dict()  # AE cards and resume fingerprints unchanged
    with pytest.raises(ValueError, match="beta"):
        make_config("ae", latent_dim=2, beta=4)
    with pytest.raises(ValueError, match="beta must be positive"):
        make_config("vae", latent_dim=2, beta=0)


def test_beta_weighs_the_kl_term_of_the_loss_and_of_early_stopping() -> None:
    torch.manual_seed(0)
    model = build_model("vae", 2, make_config("vae", latent_dim=2, channels=(4, 8, 8), hidden=16).architecture())
    x = torch.rand(8, 1, 28, 28)
    torch.manual_seed(1)
    weighted = batch_loss(model, x, torch.zeros(8, dtype=torch.long), beta=4.0)
    torch.manual_seed(1)
    recon, mu, logvar = model(x)
    terms = vae_terms(recon, x, mu, logvar)
    expected = terms["recon"].mean() + 4.0 * terms["kl"].mean()
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-6)
    metrics = {"recon": 100.0, "kl": 5.0, "elbo": -105.0}
    assert validation_loss(metrics, "vae") == 105.0
    assert validation_loss(metrics, "vae", beta=4.0) == 120.0


def test_the_committed_beta_vaes_record_their_beta() -> None:
    for name, beta in (("vae-2-b0.5", 0.5), ("vae-2-b4", 4.0), ("vae-6-b0.5", 0.5), ("vae-6-b4", 4.0)):
        ckpt = load_checkpoint(REPO_ROOT / "models" / "checkpoints" / name)
        assert ckpt.kind == "vae" and ckpt.card["config"]["beta"] == beta
        assert ckpt.card["metrics"]["heldout"]["images"] == 10000


# -- the measures --------------------------------------------------------------------------------


class Linear2D(AutoEncoder):
    """A stand-in decoder: z (2-D) -> an image whose first two pixels are z (known jumps)."""

    def __init__(self) -> None:
        super().__init__(2, Architecture((4, 8, 8), 16, False))

    def decode(self, z: Tensor) -> Tensor:
        images = torch.zeros(len(z), 1, 28, 28)
        images[:, 0, 0, :2] = z
        return images


class FirstPixelJudge(nn.Module):
    """A stand-in judge: digit 1 when the first pixel is above 0.5, else digit 0 (certain either way)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Identity(), nn.Linear(784, NUM_DIGITS))

    def forward(self, x: Tensor) -> Tensor:
        logits = torch.full((len(x), NUM_DIGITS), -50.0)
        logits[:, 1] = torch.where(x[:, 0, 0, 0] > 0.5, 50.0, -50.0)
        logits[:, 0] = -logits[:, 1]
        return logits


def test_path_smoothness_measures_jumps_in_spread_units_and_verdict_changes() -> None:
    centroids = torch.stack([torch.tensor([0.0, float(d)]) for d in range(NUM_DIGITS)])
    centroids[1] = torch.tensor([1.0, 0.0])  # the paths from digit 1 cross the judge's boundary (z0 = 0.5) once
    unit = torch.tensor([0.5, 2.0])
    result = ex.path_smoothness(Linear2D(), FirstPixelJudge(), centroids, unit, steps=5)
    # The image moves exactly as z does, and a step dz measures |dz / unit| spread units: along dimension 1 an
    # image moves 2 per spread unit (the largest), along dimension 0 it moves 0.5.
    assert result["jump_max"] == pytest.approx(2.0)
    assert 0.5 < result["jump_mean"] < 2.0
    assert result["verdict_changes_mean"] == pytest.approx(9 / 45)
    assert result["one_change_share"] == pytest.approx(9 / 45)


def test_scaled_sampling_puts_sigma_in_the_models_own_units() -> None:
    centroids = torch.zeros(NUM_DIGITS, 2)
    scale = torch.tensor([0.1, 3.0])
    samples = ex.sample_around_centroids(Linear2D(), centroids, (2.0,), 2000, seed=0, scale=scale)
    z = samples[0, :, :, 0, 0, :2].reshape(-1, 2)
    assert z.std(dim=0).tolist() == pytest.approx([0.2, 6.0], rel=0.05)
    per_digit = torch.ones(NUM_DIGITS, 2)
    per_digit[3] = 10.0
    samples = ex.sample_around_centroids(Linear2D(), centroids, (1.0,), 500, seed=0, scale=per_digit)
    assert float(samples[0, 3, :, 0, 0, 0].std()) == pytest.approx(10.0, rel=0.1)
    assert float(samples[0, 4, :, 0, 0, 0].std()) == pytest.approx(1.0, rel=0.1)


def test_a_fitted_gaussian_is_sampled_back() -> None:
    generator = torch.Generator().manual_seed(0)
    codes = torch.randn(5000, 2, generator=generator) @ torch.tensor([[2.0, 0.0], [1.0, 0.5]]) + 3
    mean, cov = ex.fit_gaussian(codes)
    drawn = ex.gaussian_latents(mean, cov, 20000, seed=1)
    assert drawn.mean(dim=0).tolist() == pytest.approx(mean.tolist(), abs=0.05)
    assert torch.cov(drawn.double().T).flatten().tolist() == pytest.approx(cov.flatten().tolist(), abs=0.1)


def test_frechet_distance_and_entropy_are_the_textbook_ones() -> None:
    rng = np.random.default_rng(0)
    features = torch.as_tensor(rng.normal(size=(4000, 3)))
    features = features - features.mean(dim=0)  # mean 0, so scaling changes only the covariance
    stats = ex.feature_statistics(features)
    assert ex.frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-6)
    shifted = ex.feature_statistics(features + torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64))
    assert ex.frechet_distance(stats, shifted) == pytest.approx(25.0, rel=1e-6)  # same covariance: |mu1 - mu2|^2
    wider = ex.feature_statistics(features * 2)  # S2 = 4 S1: Tr(S1 + 4 S1 - 2 * 2 S1) = Tr(S1)
    assert ex.frechet_distance(stats, wider) == pytest.approx(float(np.trace(stats[1])), rel=1e-6)
    assert ex.digit_entropy(torch.ones(50, dtype=torch.long)) == 0.0
    assert ex.digit_entropy(torch.arange(10).repeat(7)) == pytest.approx(math.log2(10))


def test_generation_scores_use_the_judges_penultimate_features() -> None:
    torch.manual_seed(0)
    judge = build_model("classifier").eval()
    images = torch.rand(64, 1, 28, 28)
    features = ex.judge_features(judge, images)
    assert features.shape == (64, judge.net[-1].in_features)
    with torch.no_grad():
        assert torch.allclose(judge.net[-1](features), judge(images), atol=1e-5)
    scores = ex.generation_scores(judge, images, ex.feature_statistics(features))
    assert scores["frechet_distance"] == pytest.approx(0.0, abs=1e-3)
    assert 0.0 <= scores["confident"] <= 1.0 and 0.0 <= scores["entropy_bits"] <= math.log2(10)


def test_mean_and_std_is_the_sample_spread() -> None:
    assert ex.mean_and_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3}
    assert ex.mean_and_std([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1}


# -- reproducibility: the strongest promise that holds -------------------------------------------------


def test_the_documented_command_rerun_with_the_same_thread_count_gives_byte_identical_weights(
    tiny_npz: Path, tmp_path: Path
) -> None:
    """Same command, seed, data, torch build and CPU thread count, two fresh processes: identical weights.

    (Across thread counts or devices only the order of floating-point sums differs, so retrained figures
    agree to about three significant digits: reports/README.md, section 10.)
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    weights = []
    for run in ("first", "second"):
        command = [sys.executable, "-m", "training", "train", "--kind", "vae", "--latent-dim", "2", "--beta", "4"]
        command += ["--data", str(tiny_npz), "--out", str(tmp_path / run), *TINY_FLAGS]
        subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=300)
        card = load_checkpoint(tmp_path / run / "vae-2-b4").card
        assert card["threads"] == 1 and card["config"]["beta"] == 4.0
        weights.append(sha256_of(tmp_path / run / "vae-2-b4" / "weights.safetensors"))
    assert weights[0] == weights[1]
