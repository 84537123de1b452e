"""The networks: a convolutional auto-encoder, its variational sibling, and a digit judge.

Read top to bottom. Images are 1x28x28 tensors with pixels in [0, 1] (white ink on black,
as MNIST). The encoder is conv layers then linear layers down to the latent; the decoder
mirrors it: linear layers, then transposed convolutions, then a sigmoid.

The report's design is channels (8, 16, 32) with stride-2 3x3 convs and a 288 -> 64 -> m
head. `Architecture` keeps those numbers as settings so a checkpoint can say which it used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

SIDE = 28  # images are SIDE x SIDE pixels, one channel
NUM_DIGITS = 10
AUTOENCODER_KINDS = ("ae", "vae")  # what the service serves and the report studies
KINDS = (*AUTOENCODER_KINDS, "classifier")


@dataclass(frozen=True)
class Architecture:
    """The shape of an encoder/decoder pair; stored in every checkpoint's card."""

    channels: tuple[int, int, int] = (8, 16, 32)
    hidden: int = 64
    batch_norm: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Architecture:
        return cls(
            channels=tuple(int(c) for c in data["channels"]),  # type: ignore[arg-type]
            hidden=int(data["hidden"]),
            batch_norm=bool(data["batch_norm"]),
        )


REPORT_ARCHITECTURE = Architecture()


def _norm(channels: int, enabled: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if enabled else nn.Identity()


class Encoder(nn.Module):
    """28x28 -> 14x14 -> 7x7 -> 3x3 feature maps, then linear layers to `out_features`."""

    def __init__(self, arch: Architecture, out_features: int) -> None:
        super().__init__()
        c1, c2, c3 = arch.channels
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, 3, stride=2, padding=1),  # 14x14
            nn.ReLU(True),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),  # 7x7
            _norm(c2, arch.batch_norm),
            nn.ReLU(True),
            nn.Conv2d(c2, c3, 3, stride=2, padding=0),  # 3x3
            nn.ReLU(True),
        )
        self.linear = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c3 * 3 * 3, arch.hidden),
            nn.ReLU(True),
            nn.Linear(arch.hidden, out_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.conv(x))


class Decoder(nn.Module):
    """The encoder mirrored: latent -> linear layers -> 3x3 maps -> transposed convs -> 28x28."""

    def __init__(self, arch: Architecture, latent_dim: int) -> None:
        super().__init__()
        c1, c2, c3 = arch.channels
        self.linear = nn.Sequential(
            nn.Linear(latent_dim, arch.hidden),
            nn.ReLU(True),
            nn.Linear(arch.hidden, c3 * 3 * 3),
            nn.ReLU(True),
            nn.Unflatten(1, (c3, 3, 3)),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(c3, c2, 3, stride=2, output_padding=0),  # 7x7
            _norm(c2, arch.batch_norm),
            nn.ReLU(True),
            nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1),  # 14x14
            _norm(c1, arch.batch_norm),
            nn.ReLU(True),
            nn.ConvTranspose2d(c1, 1, 3, stride=2, padding=1, output_padding=1),  # 28x28
        )

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.deconv(self.linear(z)))


class AutoEncoder(nn.Module):
    """x -> z = encoder(x) -> decoder(z)."""

    kind = "ae"

    def __init__(self, latent_dim: int, arch: Architecture = REPORT_ARCHITECTURE) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.arch = arch
        self.encoder = Encoder(arch, latent_dim)
        self.decoder = Decoder(arch, latent_dim)

    def embed(self, x: Tensor) -> Tensor:
        """The deterministic latent code of `x`: what centroids and the service use."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.encoder(x)
        return self.decoder(z), z


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z = mu + eps * sigma with eps ~ N(0, I): from torch's global generator, or from `generator` (a CPU one)."""
    sigma = torch.exp(0.5 * logvar)
    if generator is None:
        eps = torch.randn_like(sigma)
    else:
        eps = torch.randn(mu.shape, generator=generator).to(mu.device, mu.dtype)
    return mu + eps * sigma


class VariationalAutoEncoder(nn.Module):
    """x -> (mu, logvar); z = mu + eps * sigma; decoder(z).

    One encoder trunk with a 2m-wide output split into the `mu` and `logvar` heads.
    """

    kind = "vae"

    def __init__(self, latent_dim: int, arch: Architecture = REPORT_ARCHITECTURE) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.arch = arch
        self.encoder = Encoder(arch, 2 * latent_dim)
        self.decoder = Decoder(arch, latent_dim)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def embed(self, x: Tensor) -> Tensor:
        """The posterior mean: the VAE's deterministic latent code."""
        return self.encode(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar) if self.training else mu
        return self.decoder(z), mu, logvar


class DigitClassifier(nn.Module):
    """A small CNN that names the digit in an image: the judge of generated samples."""

    kind = "classifier"

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(True),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(True),
            nn.MaxPool2d(2),  # 7x7
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(True),
            nn.Dropout(0.3),
            nn.Linear(128, NUM_DIGITS),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits over the ten digits."""
        return self.net(x)


AutoEncoderNetwork = AutoEncoder | VariationalAutoEncoder  # what `embed` and `decode` work on


def autoencoder(network: nn.Module) -> AutoEncoderNetwork:
    """`network` as the auto-encoder a caller needs; a TypeError when it is another kind (the judge)."""
    if not isinstance(network, AutoEncoderNetwork):
        raise TypeError(f"expected an auto-encoder, got a {type(network).__name__}")
    return network


def build_model(kind: str, latent_dim: int | None = None, arch: Architecture = REPORT_ARCHITECTURE) -> nn.Module:
    """Make an untrained network of the named kind."""
    if kind == "ae":
        return AutoEncoder(_require_latent(latent_dim), arch)
    if kind == "vae":
        return VariationalAutoEncoder(_require_latent(latent_dim), arch)
    if kind == "classifier":
        return DigitClassifier()
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")


def _require_latent(latent_dim: int | None) -> int:
    if latent_dim is None or latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
    return latent_dim
