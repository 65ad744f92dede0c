"""Trial speed of this checkout against another git revision, measured in one run.

    python benchmarks/trial_speed.py --against REV [--repeats 3] [--trials 3] [--iterations 120]

For each code tree (the working tree, and REV checked out into a temporary git worktree)
it starts a local Ray and runs ``--trials`` of the ``toy`` preset's scratch trial one after
the other through the real Ray Tune + Ray Train path (2 DDP workers x 1 image, or whatever
the preset says), as a study does, and measures from inside each trial:

- **loop**: images/s of the training loop: the time between consecutive optimizer steps
  (data loading, forward, backward, all-reduce, step, logging), without the steps that
  contain an evaluation and without the first 5 steps;
- **start-up**: seconds from Tune starting the trial (a Tune callback in the driver) to the
  end of its first optimizer step: trial actor, Train controller and workers, imports,
  process group, data, model. The first trial of a Ray session also waits for Ray's own
  start (its first worker processes, the dashboard); every later trial of a study starts
  on a running Ray, so the two are reported apart ("first" and "later");
- **eval**: seconds per evaluation (sharded prediction, gather, COCOeval on rank 0).

Each tree runs in its own Python process with its own local Ray (the trees are on
``PYTHONPATH`` in turn), rounds alternate between the trees so that drift on a shared
machine hits both, and the report gives the median of ``--repeats`` rounds and the ratios.
The timing hooks (benchmarks/trial_probe.py) need a revision whose worker and driver
functions take ``hooks`` and ``worker_fn`` (this one and later).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def probe(iterations: int, eval_period: int, trials: int, out: str) -> None:
    """``trials`` toy scratch trials of the tree on ``PYTHONPATH``, one after the other on
    one local Ray; their timings to ``out`` (a JSON list)."""
    import trial_probe

    from study.hpo import tuning
    from study.spec.presets import get_preset
    from study.spec.resolved import base_trial
    from study.spec.study_config import Arm
    from trainables.data.synthetic import ensure_dataset

    study = get_preset("toy")
    arm = Arm("scratch", 1.0, study.axes.model[0])
    ensure_dataset(study.data.synthetic)  # generated once, outside the timed trial
    base = base_trial(study, arm, results_uri="", code_version="bench", pretrained={})
    # The trial issue 9 is measured on: 2 DDP workers x 1 image, whatever the tree's toy uses.
    base = {
        **base,
        "num_workers": 2,
        "solver": {**base["solver"], "base_iters": iterations, "ims_per_worker": 1},
        "eval_period": eval_period,
    }
    trial_probe.add_to_worker_path()
    tuning.start_ray(None, num_cpus=os.cpu_count() or 1)
    params = {"lr": base["lr"], "weight_decay": base["weight_decay"], "schedule": 1.0, "seed": 0}
    results = [trial_probe.run_probed_trial(base, params) for _ in range(trials)]
    Path(out).write_text(json.dumps(results))


# --- the comparison ------------------------------------------------------------------------
def round_summary(results: list[dict[str, float]]) -> dict[str, float]:
    """One round of one tree (its trials on one Ray, in order): mean loop and evaluation,
    the first trial's start-up, and the median start-up of the later ones (NaN if none)."""
    later = [r["startup_s"] for r in results[1:]]
    return {
        "loop_images_per_s": statistics.mean(r["loop_images_per_s"] for r in results),
        "startup_first_s": results[0]["startup_s"],
        "startup_later_s": statistics.median(later) if later else float("nan"),
        "eval_s": statistics.mean(r["eval_s"] for r in results),
        "engine": results[0]["engine"],
    }


def run_tree(tree: Path, iterations: int, eval_period: int, trials: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        # The tree's code comes first; the probe adds its own folder (trial_probe.py).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH")) if p)}
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--probe",
            "--iterations",
            str(iterations),
            "--eval-period",
            str(eval_period),
            "--trials",
            str(trials),
            "--out",
            out.name,
        ]
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit(f"benchmark trial in {tree} failed (exit {proc.returncode})")
        result = round_summary(json.loads(Path(out.name).read_text()))
    if not result["engine"].startswith(str(tree)):
        raise SystemExit(f"the trial ran {result['engine']}, not the code in {tree}")
    return result


def describe(tree: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(tree), "describe", "--always", "--dirty", "--abbrev=9"], capture_output=True, text=True
    )
    return out.stdout.strip() or str(tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REV", help="git revision to compare with (e.g. a44db09)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per tree; medians are reported (default 3)")
    parser.add_argument(
        "--trials", type=int, default=3, help="trials per round, one after the other on one Ray (default 3)"
    )
    parser.add_argument("--iterations", type=int, default=120, help="training iterations per trial (default 120)")
    parser.add_argument("--eval-period", type=int, default=60, help="iterations between evaluations (default 60)")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.iterations, args.eval_period, args.trials, args.out)
        return
    trees = {"this tree": REPO}
    worktree = None
    if args.against:
        worktree = Path(tempfile.mkdtemp(prefix="trial-speed-"))
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.against],
            check=True,
            capture_output=True,
        )
        trees[args.against] = worktree
    labels = {name: describe(tree) for name, tree in trees.items()}
    print(
        f"toy scratch trial, {args.iterations} iterations, evaluation every {args.eval_period}, "
        f"{args.trials} trials per Ray, {args.repeats} rounds, {os.cpu_count()} cores",
        flush=True,
    )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    try:
        for r in range(args.repeats):
            for name, tree in trees.items():
                result = run_tree(tree, args.iterations, args.eval_period, args.trials)
                runs[name].append(result)
                print(
                    f"  round {r + 1} {name:<10} ({labels[name]}): loop {result['loop_images_per_s']:6.2f} images/s, "
                    f"start-up {result['startup_first_s']:5.1f} s first, {result['startup_later_s']:5.1f} s later, "
                    f"eval {result['eval_s']:5.2f} s",
                    flush=True,
                )
    finally:
        if worktree is not None:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], capture_output=True
            )
    keys = (
        ("loop_images_per_s", "loop images/s"),
        ("startup_first_s", "start-up first"),
        ("startup_later_s", "start-up later"),
        ("eval_s", "eval s"),
    )
    medians = {name: {k: statistics.median(r[k] for r in rs) for k, _ in keys} for name, rs in runs.items()}
    print(f"\nmedian of {args.repeats}:")
    print(f"  {'tree':<24}" + "".join(f"{label:>16}" for _, label in keys))
    for name in trees:
        print(f"  {name + ' (' + labels[name] + ')':<24}" + "".join(f"{medians[name][k]:16.2f}" for k, _ in keys))
    if args.against:
        new, old = medians["this tree"], medians[args.against]
        print(f"  {'ratio (this / ' + args.against + ')':<24}" + "".join(f"{new[k] / old[k]:16.2f}" for k, _ in keys))
        print(
            f"\nloop speed-up {new['loop_images_per_s'] / old['loop_images_per_s']:.2f}x; start-up of a "
            f"session's first trial {old['startup_first_s']:.1f} s -> {new['startup_first_s']:.1f} s, of later "
            f"trials {old['startup_later_s']:.1f} s -> {new['startup_later_s']:.1f} s; evaluation "
            f"{old['eval_s']:.2f} s -> {new['eval_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
