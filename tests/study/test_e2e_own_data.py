"""A team's own COCO-format dataset through the whole stack: a --config file, two data
fractions, the counts and 1x derived from the files, then the replicate phase; the trials'
progress lines, their TensorBoard curves and an MLflow store (--tracker mlflow).

Marked e2e: it runs four Train runs, two at a time (about a minute on 2 cores).
"""

import json
import re

import optuna
import pytest
import ray

from analysis import final_rows, load_results
from study.cli import main
from study.hpo import tuning
from tests.own_data import write_own_dataset

pytestmark = pytest.mark.e2e


def test_own_data_with_two_fractions_runs_from_a_config_file(tmp_path, capfd):
    own = write_own_dataset(tmp_path / "own")
    config = tmp_path / "mine.yaml"
    config.write_text(
        "\n".join(
            [
                "preset: smoke",
                "num_samples: 1",
                "replicates: 2",  # then each recipe under seed 1 too, through Ray, outside Optuna
                "data:",
                "  source: coco",
                *[f"  {k}: {v}" for k, v in own.items()],
                "  search_holdout: 6",
                "axes.init: [scratch]",
                "axes.data_fraction: [1.0, 0.5]",
                "num_workers: 1",  # one 2-image worker per trial: both arms' trials at once on 2 cores
                "solver.epochs_per_1x: 1",  # 1 epoch x 19 images / batch 2 = 10 iterations
            ]
        )
    )
    tuning.start_ray(None, num_cpus=2)
    try:
        address = ray.get_runtime_context().gcs_address
        flags = ["--config", str(config), "--results", str(tmp_path), "--name", "O", "--address", address]
        code = main([*flags, "--tracker", "mlflow"])
    finally:
        ray.shutdown()
    out = capfd.readouterr().out
    assert code == 0, out[-3000:]
    # Progress: each trial's lines on the preset's clock, the study's against the plan.
    lines = re.findall(r"\[\w+\] (?:trunk|\d+x cooldown) iter \d+/\d+  [\d.]+ img/s \(data wait \d+%\).*eta \S+", out)
    assert lines, out[-3000:]
    assert re.search(r"study: [\d,]+ of ~[\d,]+ planned iterations \(\d+%\) .*, [\d.]+ iterations/s", out), out[-3000:]
    assert "data (counted in train.json): 26 images listed, 19 with a trainable box" in out
    assert "1x derived: solver.epochs_per_1x=1 epochs x 19 training images / batch 2 = 10 iterations" in out

    folder = tmp_path / "O"
    full = json.loads((folder / "subsets" / "fraction-1-seed-0.json").read_text())
    half = json.loads((folder / "subsets" / "fraction-0.5-seed-0.json").read_text())
    assert full["train_images"] == 19 and half["train_images"] == 10
    assert set(half["image_ids"]) < set(full["image_ids"])  # nested, and not the same images
    splits = json.loads((folder / "subsets" / "splits-seed-0.json").read_text())
    assert splits["search"]["images"] == 6 and splits["test"]["images"] == 10
    assert not set(splits["search"]["image_ids"]) & set(full["image_ids"])

    df = load_results(folder)
    finals = final_rows(df)
    assert set(finals["arm"]) == {"scratch-tiny-f1", "scratch-tiny-f0.5"}
    # The replicate phase: one configuration searched per arm, so no best; the recipe under
    # seed 1 beside the search's seed 0, its trunk to 2x, never told to Optuna (each arm's
    # study holds the search trial's 2x and its 1x branch).
    chosen = json.loads((folder / "replicates.json").read_text())["arms"]
    for arm in ("scratch-tiny-f1", "scratch-tiny-f0.5"):
        assert chosen[arm]["trunk"] == 2.0 and chosen[arm]["configs"]["best"] is None
        mine = finals[(finals["arm"] == arm) & (finals["schedule"] == 2.0)]
        assert sorted(mine["seed"]) == [0, 1] and mine["lr"].nunique() == 1
        trials = optuna.load_study(study_name=arm, storage=f"sqlite:///{folder / 'optuna.db'}").get_trials()
        assert sorted(t.params["schedule"] for t in trials) == [1.0, 2.0]
    assert (finals["max_iterations"].isin([10, 20])).all()
    by_arm = finals.groupby("arm")["train_images"].first()
    assert by_arm["scratch-tiny-f1"] == 19 and by_arm["scratch-tiny-f0.5"] == 10
    assert finals["test_bbox_AP"].notna().all() and finals["test_segm_AP"].notna().all()
    # The sub-pixel box's image trains in the full set unless the search split holds it.
    train = json.loads(open(own["train_annotations"]).read())
    degenerate = next(a["image_id"] for a in train["annotations"] if a["bbox"][2] < 1)
    expected = {"scratch-tiny-f1": int(degenerate in full["image_ids"])}
    expected["scratch-tiny-f0.5"] = int(degenerate in half["image_ids"])
    assert finals.groupby("arm")["left_out_annotations"].first().to_dict() == expected
    # TensorBoard: one run per trial, every point at the model's iteration, each schedule's
    # final result on the "final" series at the iteration its cooldown ended.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = sorted((folder / "tensorboard").glob("*/*"))
    assert {r.parent.name for r in runs} == {"scratch-tiny-f1", "scratch-tiny-f0.5"}
    assert len(runs) == df["trial_id"].nunique()
    for run in runs:
        events = EventAccumulator(str(run))
        events.Reload()
        steps = [e.step for e in events.Scalars("final/eval/bbox_AP")]
        mine = finals[finals["trial_id"] == run.name]
        assert sorted(steps) == sorted(mine["iteration"]), (run, steps)
        assert not [t for t in events.Tags()["scalars"] if "test_" in t]  # the test split stays in the rows
    # MLflow (--tracker mlflow, a SQLite store in the study folder): a run per Tune trial, its
    # results at the model's iteration, and no test-split number.
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{folder}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("O").experiment_id])
    ids = set(df["trial_id"])
    named = {run.info.run_id: [t for t in ids if t in run.info.run_name] for run in runs}  # Tune's trial names
    assert sorted(t for found in named.values() for t in found) == sorted(ids), named
    for run in runs:
        (trial_id,) = named[run.info.run_id]
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "bbox_AP"))
        assert steps == sorted(df.loc[df["trial_id"] == trial_id, "iteration"]), (trial_id, steps)
        assert not [k for k in run.data.metrics if k.startswith("test_")] and "lr" in run.data.params
    record = json.loads((folder / "study.json").read_text())
    assert record["preset"]["solver"]["base_iters"] == 10 and record["config"]["preset"] == "smoke"
