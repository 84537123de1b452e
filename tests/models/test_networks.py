"""The networks' shapes, the VAE's loss as the math, the corruptions and the augmentation."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from models.corruptions import GaussianNoise, Occlusion
from models.losses import bce_per_image, kl_to_standard_normal, mse_per_image, vae_terms
from models.networks import (
    AUTOENCODER_KINDS,
    Architecture,
    AutoEncoder,
    DigitClassifier,
    VariationalAutoEncoder,
    autoencoder,
    build_model,
    reparameterize,
)
from training.augment import random_affine, random_thetas


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 1, 28, 28), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", [Architecture(), Architecture((16, 32, 64), 128, False)], ids=["report", "wide"])
def test_autoencoder_maps_images_to_latents_and_back(arch: Architecture) -> None:
    model = AutoEncoder(3, arch).eval()
    recon, z = model(images())
    assert recon.shape == (4, 1, 28, 28) and z.shape == (4, 3)
    assert recon.min() >= 0 and recon.max() <= 1
    assert torch.equal(model.embed(images()), z)
    assert model.decode(z).shape == (4, 1, 28, 28)


def test_vae_samples_in_training_and_uses_the_mean_in_eval() -> None:
    model = VariationalAutoEncoder(2)
    x = images()
    model.train()
    first, mu, logvar = model(x)
    second, _, _ = model(x)
    assert mu.shape == logvar.shape == (4, 2)
    assert not torch.equal(first, second)  # z = mu + eps * sigma, a fresh eps each time
    model.eval()
    recon, mu, _ = model(x)
    assert torch.equal(recon, model.decode(mu)) and torch.equal(model.embed(x), mu)


def test_classifier_gives_ten_logits() -> None:
    assert DigitClassifier().eval()(images()).shape == (4, 10)


def test_build_model_and_architecture_round_trip() -> None:
    arch = Architecture((4, 8, 16), 32, False)
    assert Architecture.from_dict(arch.to_dict()) == arch
    assert isinstance(build_model("vae", 2, arch), VariationalAutoEncoder)
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("gan", 2)
    with pytest.raises(ValueError, match="latent_dim"):
        build_model("ae", None)


def test_kl_matches_torch_distributions_and_the_elbo_adds_up() -> None:
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn((5, 3), generator=g), torch.randn((5, 3), generator=g)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), expected)
    assert torch.allclose(kl_to_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))

    recon, target = images(5, 2).clamp(0.05, 0.95), images(5, 3)
    terms = vae_terms(recon, target, mu, logvar)
    torch.testing.assert_close(terms["recon"], bce_per_image(recon, target) * 784)
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))


def test_mse_per_image_is_the_pixel_mean() -> None:
    a, b = images(2, 0), images(2, 1)
    assert torch.allclose(mse_per_image(a, b), ((a - b) ** 2).mean(dim=(1, 2, 3)))


def test_corruptions_are_reproducible_from_a_seed() -> None:
    x = images(6)
    noise = GaussianNoise(0.0, 0.5)
    assert torch.equal(noise(x, seed=3), noise(x, seed=3)) and not torch.equal(noise(x, seed=3), noise(x, seed=4))
    occlusion = Occlusion(area=(0.1, 0.3))
    occluded = occlusion(x, seed=5)
    assert torch.equal(occluded, occlusion(x, seed=5))
    for i, (top, left, h, w) in enumerate(occlusion.rectangles(6, 28, 28, seed=5)):
        assert 0.05 <= h * w / 784 <= 0.35
        assert (occluded[i, 0, top : top + h, left : left + w] == 0).all()


def test_augmentation_at_zero_strength_is_the_identity() -> None:
    x = images()
    assert random_affine(x, 0.0, torch.Generator().manual_seed(0)) is x
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert torch.allclose(random_thetas(3, 0.0), identity.expand(3, 2, 3))


def test_augmentation_is_seeded_small_and_keeps_the_ink(tiny_digits) -> None:
    x, _ = tiny_digits.tensors()
    x = x[:32]
    a = random_affine(x, 1.0, torch.Generator().manual_seed(7))
    b = random_affine(x, 1.0, torch.Generator().manual_seed(7))
    c = random_affine(x, 1.0, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    ink_ratio = a.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))  # a small affine map keeps the stroke's area
    assert ((ink_ratio > 0.7) & (ink_ratio < 1.3)).all()
    thetas = random_thetas(1000, 1.0, torch.Generator().manual_seed(0))
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    deviation = (thetas - identity).abs()
    # rotation <= 0.2 rad, scale within 10 %, shear <= 0.15: |sin 0.2| / 0.9 + 0.15 < 0.38
    assert deviation[:, :, :2].max() < math.sin(0.2) / 0.9 + 0.15 and deviation[:, :, 2].max() <= 0.1
    assert deviation[:, :, 2].max() > 0.05  # and it does move things


def test_unseeded_corruptions_leave_torch_global_generator_alone() -> None:
    """A corruption without a seed draws fresh entropy for itself, not by reseeding torch's global generator."""
    images = torch.rand(2, 1, 28, 28)
    before = torch.get_rng_state()
    GaussianNoise(0.0, 0.3)(images)
    Occlusion()(images)
    assert torch.equal(torch.get_rng_state(), before)


def test_reparameterize_draws_mu_plus_eps_sigma_from_the_generator_it_is_given() -> None:
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(5))
    eps = torch.randn((4, 3), generator=torch.Generator().manual_seed(5))
    assert torch.equal(z, mu + eps * torch.exp(0.5 * logvar))
    torch.manual_seed(0)
    unseeded = reparameterize(mu, logvar)  # torch's global generator, as training draws it
    torch.manual_seed(0)
    assert torch.equal(unseeded, mu + torch.randn_like(mu) * torch.exp(0.5 * logvar))


def test_autoencoder_accepts_the_auto_encoders_and_refuses_the_judge() -> None:
    for kind in AUTOENCODER_KINDS:
        network = build_model(kind, 2)
        assert autoencoder(network) is network
    with pytest.raises(TypeError, match="expected an auto-encoder, got a DigitClassifier"):
        autoencoder(build_model("classifier"))
