"""The checkpoint format: one folder per model, written atomically, verified on load.

    models/checkpoints/<name>/
        weights.safetensors   tensors only: loading never runs code from a file
        card.json             kind, latent dim, architecture, provenance, metrics,
                              and `files`: the sha256 of every other file in the folder
                              (older cards also carry `weights_sha256`, a copy of one
                              entry of `files`; it is ignored)
        centroids.json        digit -> mean latent vector, and its per-dimension spread
        history.json          per-epoch train and validation loss
        atlas.json            optional: the latent codes of held-out digits with their true labels (what the
                              explorer's map plots); {"latent_dim", "source", "labels": [N], "codes": [N][m]}.
                              `add_files` (checkpoint_edits.py) adds it to a saved checkpoint, the others untouched.

The card (card.json). `save_checkpoint` adds format_version, name, kind, latent_dim,
architecture ({"channels", "hidden", "batch_norm"}; null for the classifier) and files
({file name: sha256} for every other file) to what its caller gives; training
(training/train.py) gives:

    versions        {"python", "torch", "numpy", "safetensors"}
    data            training data provenance: {"kind", "files": [{"name", "bytes", "sha256"}], "images"}
    test_data       the same for --test-data, or null
    split           {"seed", "val_fraction", "test_fraction", "sizes": {"train", "validation", "test"}};
                    training.split.split_indices(images, seed, val_fraction, test_fraction) rebuilds it
    config          every training.config.TrainConfig field (channels as a list; the classifier's
                    has no architecture)
    epochs_run      epochs trained
    best_epoch      the epoch (1-based) whose weights were kept: the early-stop epoch
    best_val_loss   its validation loss
    stopped_early   true when patience ran out before the epoch limit
    wall_time_s     seconds from loading to the saved checkpoint (summed over resumed sessions)
    device          what it trained on ("cpu", "cuda", ...)
    threads         torch's CPU thread count (the order of floating-point sums; absent in older cards)
    resumed         whether any part came from a resume file
    trained_at      UTC time the checkpoint was written (ISO 8601)
    metrics         {"validation": {...}, "test_split": {...}, "heldout": {...}}
                    test_split: the split's held-back test part (absent when test_fraction is 0);
                    heldout: the --test-data set (absent without it). Each holds "images" and
        ae          mse, bce (means per pixel), nearest_centroid_accuracy
        vae         mse, bce (of the decoded posterior mean), recon (summed BCE, nats per image),
                    kl (nats per image), elbo (= -(recon + kl), one seeded sample of z per image),
                    nearest_centroid_accuracy
        classifier  accuracy, cross_entropy
    notes           (optional) free text on anything unusual in how the checkpoint was made

Only `kind`, `latent_dim`, `architecture` and `files` are needed to load a checkpoint; the rest
is provenance. Cards written before the report kept its numbers in reports/metrics.json may
also hold `metrics.report` (the report's figures at that time).

A save builds the whole folder beside the target under a hidden temporary name and then
renames it into place, so a crash leaves either the old checkpoint or the new one, never
a mix (models/storage.py: files as readable as the umask allows, 0644 and folders 0755
under the usual umask 022; a full disk is a `DiskFullError` naming the folder). A load
checks every file's sha256 against the card, then every tensor's name and shape against
the network the card describes, and refuses anything else with a
`CheckpointError` that names the file and what is wrong.

Bounds: a checkpoint may come from anyone who can write to the models folder, so a load first checks the card
against `CheckpointBounds` (its latent size and layer widths, and the parameter count of the network it describes,
counted on torch's `meta` device, which allocates nothing), then each listed file's size (by `stat`), and only then
reads, hashes (within a time limit) and builds anything. Files and folders that are links out of the models folder
(the checkpoint folder's parent) are refused before they are opened.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

from models.checkpoint_bounds import (
    DEFAULT_BOUNDS,
    MAX_CARD_BYTES,
    MAX_JSON_FILE_BYTES,
    MAX_LATENT_DIM,
    MAX_LAYER_WIDTH,
    CheckpointBounds,
    CheckpointError,
    file_guard,
    refuse_links_out,
)
from models.networks import (
    AUTOENCODER_KINDS,
    KINDS,
    NUM_DIGITS,
    Architecture,
    AutoEncoderNetwork,
    build_model,
)
from models.storage import atomic_write_folder, json_file_bytes, sha256_of

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"
CENTROIDS_FILE = "centroids.json"
HISTORY_FILE = "history.json"
ATLAS_FILE = "atlas.json"
DEFAULT_CHECKPOINTS_DIR = Path(__file__).resolve().parent / "checkpoints"
JUDGE_NAME = "classifier"  # the checkpoint the judge (a digit classifier) is saved as


@dataclass
class Checkpoint:
    """A loaded, verified checkpoint: the network in eval mode plus its metadata."""

    path: Path
    card: dict[str, Any]
    network: nn.Module
    centroids: Tensor | None = None  # (10, latent_dim), row d is digit d's centroid
    spread: Tensor | None = None  # (10, latent_dim), per-dimension std around it
    history: list[dict[str, Any]] = field(default_factory=list)
    atlas: dict[str, Any] | None = None  # atlas.json as read and checked, when the card lists one

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def kind(self) -> str:
        return str(self.card["kind"])

    @property
    def latent_dim(self) -> int | None:
        return self.card.get("latent_dim")


# -- save ----------------------------------------------------------------------------


def centroids_payload(centroids: Tensor, spread: Tensor, counts: list[int]) -> dict[str, Any]:
    """The JSON form of per-digit centroids: digit (as a string) -> vector."""
    return {
        "latent_dim": int(centroids.shape[1]),
        "centroids": {str(d): [float(v) for v in centroids[d]] for d in range(NUM_DIGITS)},
        "spread": {str(d): [float(v) for v in spread[d]] for d in range(NUM_DIGITS)},
        "counts": {str(d): int(counts[d]) for d in range(NUM_DIGITS)},
    }


def save_checkpoint(
    directory: Path | str,
    model: nn.Module,
    card: dict[str, Any],
    *,
    centroids: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a complete checkpoint folder at `directory`, replacing any old one atomically.

    `card` holds the caller's metadata; this adds the format version, the architecture,
    and the sha256 of each file written.
    """
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    contents = {WEIGHTS_FILE: save(state)}  # everything in memory first: the size a full disk lacked is known
    for name, payload in ((CENTROIDS_FILE, centroids), (HISTORY_FILE, history)):
        if payload is not None:
            contents[name] = json_file_bytes(payload)
    full_card = {
        "format_version": FORMAT_VERSION,
        "name": directory.name,
        **card,
        "kind": model.kind,
        "latent_dim": getattr(model, "latent_dim", None),
        "architecture": model.arch.to_dict() if isinstance(model, AutoEncoderNetwork) else None,
        "files": {name: hashlib.sha256(content).hexdigest() for name, content in contents.items()},
    }
    contents[CARD_FILE] = json_file_bytes(full_card)
    atomic_write_folder(directory, contents)
    return directory


# -- load ----------------------------------------------------------------------------


def read_card(directory: Path | str) -> dict[str, Any]:
    """Read and sanity-check a card without touching the weights."""
    path = Path(directory) / CARD_FILE
    refuse_links_out(path, Path(directory).parent)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CheckpointError(path, "missing") from None
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror})") from None
    if size > MAX_CARD_BYTES:
        raise CheckpointError(path, f"{size} bytes, over the bound of {MAX_CARD_BYTES} for a card")
    card = _read_json(path)

    if not isinstance(card, dict):
        raise CheckpointError(path, "the card is not a JSON object")
    if card.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(path, f"format_version is {card.get('format_version')!r}, expected {FORMAT_VERSION}")
    if card.get("kind") not in KINDS:
        raise CheckpointError(path, f"kind is {card.get('kind')!r}, expected one of {', '.join(KINDS)}")
    if card["kind"] != "classifier":
        latent = card.get("latent_dim")
        if not isinstance(latent, int) or isinstance(latent, bool) or latent < 1:
            raise CheckpointError(path, f"latent_dim is {latent!r}, expected a positive integer")
    if not isinstance(card.get("files"), dict) or WEIGHTS_FILE not in card["files"]:
        raise CheckpointError(path, f"the card lists no sha256 for {WEIGHTS_FILE}")
    return card


def check_card_bounds(directory: Path | str, card: dict[str, Any], bounds: CheckpointBounds = DEFAULT_BOUNDS) -> int:
    """Check the network a card describes against `bounds` without allocating it; returns its parameter count
    (buffers included: what its weights file holds)."""
    path = Path(directory) / CARD_FILE
    latent = card.get("latent_dim")
    if card["kind"] != "classifier" and isinstance(latent, int) and latent > MAX_LATENT_DIM:
        raise CheckpointError(path, f"latent_dim is {latent}, over the bound of {MAX_LATENT_DIM} (the image's pixels)")
    arch = card.get("architecture")
    if card["kind"] != "classifier" and isinstance(arch, dict):
        channels = arch.get("channels")
        widths = [*(channels if isinstance(channels, list | tuple) else [channels]), arch.get("hidden")]
        if not all(isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= MAX_LAYER_WIDTH for w in widths):
            raise CheckpointError(
                path, f"architecture {arch!r}: every layer must be 1 to {MAX_LAYER_WIDTH} wide (channels, hidden)"
            )
    with torch.device("meta"):  # shapes only: nothing is allocated
        network = _build_from_card(Path(directory), card)
    parameters = sum(tensor.numel() for tensor in network.state_dict().values())
    if parameters > bounds.max_parameters:
        raise CheckpointError(
            path, f"describes a network of {parameters} parameters, over the bound of {bounds.max_parameters}"
        )
    return parameters


def verify_files(directory: Path | str, card: dict[str, Any], bounds: CheckpointBounds = DEFAULT_BOUNDS) -> None:
    """Check every file the card lists against its sha256: first every name, link and size, then the hashes,
    all within `bounds.read_timeout_s`."""
    directory = Path(directory)
    paths = []
    for name in card["files"]:
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise CheckpointError(directory / CARD_FILE, f"file name {name!r} is not a plain name")
        path = directory / name
        refuse_links_out(path, directory.parent)
        if not path.is_file():
            raise CheckpointError(path, "missing (the card lists it)")
        bound = min(bounds.max_file_bytes, MAX_JSON_FILE_BYTES) if name.endswith(".json") else bounds.max_file_bytes
        if (size := path.stat().st_size) > bound:
            raise CheckpointError(path, f"{size} bytes, over the bound of {bound} for this file")
        paths.append(path)
    deadline = time.monotonic() + bounds.read_timeout_s
    for path in paths:
        expected = str(card["files"][path.name])
        actual = sha256_of(path, file_guard(path, bounds.max_file_bytes, deadline))
        if actual != expected:
            raise CheckpointError(
                path, f"sha256 mismatch: the card says {expected[:12]}…, the file is {actual[:12]}… (damaged or edited)"
            )


def load_checkpoint(
    directory: Path | str, device: str | torch.device = "cpu", bounds: CheckpointBounds = DEFAULT_BOUNDS
) -> Checkpoint:
    """Load and verify one checkpoint folder within `bounds`; raise `CheckpointError` on any problem."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(directory, "no such checkpoint folder")
    refuse_links_out(directory, directory.parent)
    card = read_card(directory)
    check_card_bounds(directory, card, bounds)
    verify_files(directory, card, bounds)
    network = _build_from_card(directory, card)
    state = _read_weights(directory / WEIGHTS_FILE)
    _check_state_matches(directory / WEIGHTS_FILE, network, state)
    network.load_state_dict(state)
    network.to(device).eval()

    checkpoint = Checkpoint(path=directory, card=card, network=network)
    if CENTROIDS_FILE in card["files"]:
        checkpoint.centroids, checkpoint.spread = _read_centroids(directory / CENTROIDS_FILE, card["latent_dim"])
    elif card["kind"] in AUTOENCODER_KINDS:
        raise CheckpointError(directory / CENTROIDS_FILE, "an auto-encoder checkpoint needs its centroids")
    if HISTORY_FILE in card["files"]:
        checkpoint.history = _read_json(directory / HISTORY_FILE)
    if ATLAS_FILE in card["files"]:
        checkpoint.atlas = _read_atlas(directory / ATLAS_FILE, card.get("latent_dim"))
    return checkpoint


def list_checkpoints(root: Path | str = DEFAULT_CHECKPOINTS_DIR) -> list[Path]:
    """Checkpoint folders under `root` (those holding a card), by name; hidden ones skipped."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / CARD_FILE).exists())


def _read_json(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON_FILE_BYTES + 1)  # never more, even if the file grew after it was checked
        if len(data) > MAX_JSON_FILE_BYTES:
            raise CheckpointError(path, f"over the bound of {MAX_JSON_FILE_BYTES} bytes for this file")
        return json.loads(data)
    except FileNotFoundError:
        raise CheckpointError(path, "missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(path, f"not valid JSON ({exc})") from None


def _build_from_card(directory: Path, card: dict[str, Any]) -> nn.Module:
    try:
        arch = Architecture.from_dict(card["architecture"]) if card["kind"] != "classifier" else None
        if arch is None:
            return build_model("classifier")
        return build_model(card["kind"], card["latent_dim"], arch)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(directory / CARD_FILE, f"cannot build the network it describes ({exc})") from None


def _read_weights(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(path, f"not a readable safetensors file ({exc})") from None


def _check_state_matches(path: Path, model: nn.Module, state: dict[str, Tensor]) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            path,
            f"tensors do not match the network {CARD_FILE} describes "
            f"(missing: {missing[:3]}, unexpected: {unexpected[:3]})",
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                path,
                f"tensor {key!r} has shape {tuple(state[key].shape)}; the card's network needs {tuple(tensor.shape)}: "
                f"{CARD_FILE}'s latent_dim or architecture disagrees with these weights",
            )


def _read_centroids(path: Path, latent_dim: int) -> tuple[Tensor, Tensor]:
    data = _read_json(path)
    try:
        rows = [data["centroids"][str(d)] for d in range(NUM_DIGITS)]
        spread = [data["spread"][str(d)] for d in range(NUM_DIGITS)]
        centroids = torch.tensor(rows, dtype=torch.float32)
        spreads = torch.tensor(spread, dtype=torch.float32)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"expected a vector for each digit 0-9 ({exc})") from None
    if centroids.shape != (NUM_DIGITS, latent_dim) or spreads.shape != (NUM_DIGITS, latent_dim):
        needed = (NUM_DIGITS, latent_dim)
        raise CheckpointError(path, f"centroids have shape {tuple(centroids.shape)}, the card needs {needed}")
    if not torch.isfinite(centroids).all():
        raise CheckpointError(path, "centroids contain NaN or infinity")
    return centroids, spreads


def _read_atlas(path: Path, latent_dim: int | None) -> dict[str, Any]:
    data = _read_json(path)
    try:
        labels, codes = data["labels"], data["codes"]
        ok = isinstance(labels, list) and isinstance(codes, list) and len(labels) == len(codes)
        ok = ok and all(isinstance(d, int) and 0 <= d < NUM_DIGITS for d in labels)
        ok = ok and all(isinstance(c, list) and len(c) == latent_dim for c in codes)
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise CheckpointError(path, f"expected 'labels' (digits 0-9) and as many 'codes' of {latent_dim} numbers")
    return data
