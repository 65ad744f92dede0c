"""The command line's flags (``python study/run.py --help``), apart from what they do
(study/cli.py)."""

from __future__ import annotations

import argparse

from study.arguments import DEFAULT_PRESET, TRIAL_KEYS
from study.spec.presets import PRESETS

# Experiment trackers through Ray Tune's callbacks (study/hpo/trackers.py).
TRACKERS = ("mlflow", "wandb", "aim")


def build_parser() -> argparse.ArgumentParser:
    presets = "\n".join(f"  {name:<20} {p.description}" for name, p in PRESETS.items())
    parser = argparse.ArgumentParser(
        prog="python study/run.py",
        description="Scratch vs. ImageNet-pretrained Mask R-CNN: a Ray Tune + Ray Train + Optuna study. "
        "Without --trial it runs one Optuna search per arm (init x data fraction x model).",
        epilog=f"presets:\n{presets}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", help=f"study preset (default: {DEFAULT_PRESET}, or the resumed study's)")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a YAML (or JSON) file of settings, the keys --set takes (nested or dotted), with 'preset: NAME' "
        "as its base; --set applies after it. A study folder's study.json seeds a new study the same way",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved study as a file --config takes back, and exit without training",
    )
    parser.add_argument(
        "--trial",
        metavar="KEY=VALUE,...",
        help=f"run exactly one trial with these values instead of a search; keys: {', '.join(TRIAL_KEYS)}",
    )
    parser.add_argument("--results", default="results", help="results folder or s3:// URI (default: results/)")
    parser.add_argument("--name", help="study name, the folder under --results (default: the preset's name)")
    parser.add_argument("--num-samples", type=_positive_int, metavar="N", help="trials per arm (default: the preset's)")
    parser.add_argument(
        "--replicates",
        type=_positive_int,
        metavar="K",
        help="after the search, score each arm's recipe and best (lr, weight decay) under K seeds for the "
        "report's seed noise and intervals (default: the preset's; 1 = none; may be raised on --resume)",
    )
    parser.add_argument("--resume", action="store_true", help="continue the study in an existing folder")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit without training")
    parser.add_argument(
        "--optuna-storage",
        metavar="URL",
        help="where Optuna keeps the arms' studies: an RDB URL (postgresql://..., mysql://..., sqlite:///...) or "
        "journal:/shared/path.log (default: optuna.db in the study folder, published to s3:// results after "
        "every finished trial); the same as --set optuna_storage=URL",
    )
    parser.add_argument(
        "--tracker",
        action="append",
        default=[],
        choices=TRACKERS,
        help="also log every trial's config and results to an experiment tracker through Ray Tune's callback "
        "(repeatable; the trackers extra; MLFLOW_TRACKING_URI, WANDB_PROJECT and WANDB_MODE=offline are read as "
        "usual; set when a study starts: a --resume keeps the trackers it started with)",
    )
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a new local Ray)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the preset, e.g. --set num_workers=4 --set data.train_images=/d/x "
        "--set search.lr=[0.01,0.05] (repeatable)",
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
