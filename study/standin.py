"""Make the toy's stand-ins for ImageNet that ship with the package: ``python -m study.standin``.

The toy presets' pretrained arms load a backbone pretrained on trainables/pretraining/pretrain_data.py's
classes (trainables/pretraining/pretrain.py). Pretraining one takes 5 to 7 minutes on one core, the
critical path of the default's ten: so the backbones of pretraining seeds 0 to K-1 (the
search's seed and the replicate seeds of `toy-replicates` and `toy-paper`) ship in
``trainables/pretraining/standin/``, each in a folder named by its cache key, made here by the same code
that makes any other one. A change to the pretraining spec, its classes or its recipe
changes the key: ``tests/data/test_standin.py`` then fails until this is run again.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path

import torch

from study.spec.toy_presets import LOCAL_MODELS, TOY_PRETRAIN
from trainables.pretraining.pretrain import SHIPPED, cache_key, ensure_pretrained

# Seeds 0, 1 and 2: the search's and the three-seed replicate phases'.
SEEDS = 3


def shipped_specs(seeds: int = SEEDS):
    """``(model, spec)`` of every stand-in that ships: the toy's backbone, seeds 0 to ``seeds - 1``."""
    return [(LOCAL_MODELS["tiny"], dataclasses.replace(TOY_PRETRAIN, seed=s)) for s in range(seeds)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m study.standin", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=SEEDS, help="pretraining seeds 0 to N-1 (default %(default)s)")
    args = parser.parse_args(argv)
    # One thread, as in a one-CPU trial, where every other stand-in is made.
    torch.set_num_threads(1)
    SHIPPED.mkdir(exist_ok=True)
    keep = set()
    with tempfile.TemporaryDirectory() as tmp:
        for model, spec in shipped_specs(args.seeds):
            name = f"pretrain-{cache_key(model, spec)}"
            keep.add(name)
            if (SHIPPED / name).exists():
                print(f"{name}: up to date (seed {spec.seed})")
                continue
            made = ensure_pretrained(model, spec, root=Path(tmp) / "cache")
            shutil.copytree(made.path.parent, SHIPPED / name)
            print(f"{name}: pretrained (seed {spec.seed}, held-out accuracy {made.accuracy:.3f})")
    for stale in SHIPPED.glob("pretrain-*"):
        if stale.name not in keep:
            shutil.rmtree(stale)
            print(f"{stale.name}: removed (no longer the toy's spec)")


if __name__ == "__main__":
    main()
