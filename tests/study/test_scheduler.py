"""Early stopping at schedule rungs (study/hpo/scheduler.py) with Ray Tune's real scheduler
interface: per arm and schedule, the loss's tie-break, the recipe never stopped, a gap
within the noise, rungs rebuilt after a restore."""

import functools
import types

import pytest
from ray import cloudpickle
from ray.tune.schedulers import TrialScheduler

from study.hpo.scheduler import NOISE_GAPS, ScheduleRungs, rung_score
from trainables.contract.rows import LOSS_WEIGHT


def _trial(trial_id):
    return types.SimpleNamespace(trial_id=trial_id, config={})


def _rung(schedule, ap, trunk=3.0, arm="a", loss=1.0, status="completed"):
    return {
        "phase": "final",
        "arm": arm,
        "schedule": schedule,
        "trunk_schedule": trunk,
        "bbox_AP": ap,
        "loss": loss,
        "status": status,
    }


def test_rungs_compare_only_within_arm_and_schedule():
    sched = ScheduleRungs("bbox_AP", reduction_factor=2)
    good, bad, other_arm, short = _trial("good"), _trial("bad"), _trial("other"), _trial("short")
    # Trunk rows and checkpoints are never judged.
    assert sched.on_trial_result(None, bad, {"phase": "trunk", "bbox_AP": 0.0, "arm": "a"}) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, good, _rung(1.0, 0.5)) == TrialScheduler.CONTINUE
    # Worse than the rung's cutoff at 1x, with more trunk to train: stopped.
    assert sched.on_trial_result(None, bad, _rung(1.0, 0.1)) == TrialScheduler.STOP
    # Just as bad, but another arm, or the trial's own last schedule (nothing left to save).
    assert sched.on_trial_result(None, other_arm, _rung(1.0, 0.01, arm="b")) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, short, _rung(1.0, 0.02, trunk=1.0)) == TrialScheduler.CONTINUE
    # At 2x the rung holds only what reached 2x.
    assert sched.on_trial_result(None, good, _rung(2.0, 0.2)) == TrialScheduler.CONTINUE
    assert sched.num_stopped == 1
    assert "a 1x: 3" in sched.debug_string() and "b 1x: 1" in sched.debug_string()


def test_loss_breaks_ties_at_zero_ap():
    assert rung_score({"bbox_AP": 0.0, "loss": 0.5}, "bbox_AP") > rung_score({"bbox_AP": 0.0, "loss": 2.0}, "bbox_AP")
    assert rung_score({"bbox_AP": 0.01, "loss": 10.0}, "bbox_AP") > rung_score({"bbox_AP": 0.0, "loss": 0.0}, "bbox_AP")
    assert rung_score({"bbox_AP": 0.0, "loss": None}, "bbox_AP") == -10 * LOSS_WEIGHT
    sched = ScheduleRungs("bbox_AP", reduction_factor=2)
    sched.on_trial_result(None, _trial("x"), _rung(1.0, 0.0, loss=0.8))
    assert sched.on_trial_result(None, _trial("y"), _rung(1.0, 0.0, loss=1.5)) == TrialScheduler.STOP


def test_rungs_are_rebuilt_from_the_results_after_a_restore(tmp_path):
    from trainables.contract import row_store

    # What a killed study had written (Tune restores its scheduler unpickled, rungs empty):
    # two trials of arm "a" scored 1x; trunk rows never enter a rung.
    for trial_id, ap in (("t1", 0.5), ("t2", 0.4)):
        row_store.write_row(
            str(tmp_path), {**_rung(1.0, ap), "trial_id": trial_id, "iteration": 250, "cost_iterations": 250}
        )
        row_store.write_row(
            str(tmp_path),
            {**_rung(1.0, 0.0), "phase": "trunk", "trial_id": trial_id, "iteration": 125, "cost_iterations": 500},
        )
    history = functools.partial(row_store.read_rows, str(tmp_path))
    fresh = ScheduleRungs("bbox_AP", 2)
    restored = cloudpickle.loads(cloudpickle.dumps(ScheduleRungs("bbox_AP", 2, history=history)))
    for sched in (fresh, restored):
        late = _trial("t3")
        sched.on_trial_add(None, late)
        decision = sched.on_trial_result(None, late, _rung(1.0, 0.3))
        assert decision == (TrialScheduler.STOP if sched is restored else TrialScheduler.CONTINUE)
    # A resumed trial that reports its rung again keeps its first value there.
    assert restored.on_trial_result(None, _trial("t2"), _rung(1.0, 0.0)) == TrialScheduler.CONTINUE
    assert set(restored.rungs.scores) == {("a", 1.0)}


def _config_rung(schedule, ap, lr, wd=1e-4, trunk=3.0, arm="a"):
    return {**_rung(schedule, ap, trunk=trunk, arm=arm), "lr": lr, "weight_decay": wd}


def test_the_recipe_trial_is_never_stopped_when_a_peer_is_ahead():
    """Table 1's recipe row must be complete: the recipe runs its whole schedule set."""
    sched = ScheduleRungs("bbox_AP", reduction_factor=2, recipes={"a": (0.3, 1e-4, 3.0)})
    assert sched.on_trial_result(None, _trial("peer"), _config_rung(1.0, 0.5, lr=0.1)) == TrialScheduler.CONTINUE
    recipe = _config_rung(1.0, 0.1, lr=0.3)
    assert sched.on_trial_result(None, _trial("recipe"), recipe) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, _trial("recipe"), {**recipe, "schedule": 2.0}) == TrialScheduler.CONTINUE
    # A worse score from any other configuration, or the recipe's values in another arm, stops.
    assert sched.on_trial_result(None, _trial("other"), _config_rung(1.0, 0.05, lr=0.31)) == TrialScheduler.STOP
    assert sched.on_trial_result(None, _trial("b0"), _config_rung(1.0, 0.5, lr=0.1, arm="b")) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, _trial("b1"), _config_rung(1.0, 0.1, lr=0.3, arm="b")) == TrialScheduler.STOP
    assert sched.num_stopped == 2


def test_two_trials_equal_within_the_rungs_noise_are_both_kept():
    """A trial stops only beyond z_0.95 x sqrt(2) x the rung's seed std below the cutoff."""
    sched = ScheduleRungs("bbox_AP", reduction_factor=2, seed_std=0.02)
    # 0.02 of seed std: two draws of one trial differ by up to 0.047 one time in twenty.
    assert sched.rungs.min_gap("a", 1.0) == pytest.approx(1.6449 * 2**0.5 * 0.02, abs=1e-4)
    sched.on_trial_result(None, _trial("x"), _rung(1.0, 0.50))
    # Cutoff 0.485 (the median of 0.50 and 0.47): 0.47 lies 0.015 below it, well within the noise.
    assert sched.on_trial_result(None, _trial("y"), _rung(1.0, 0.47)) == TrialScheduler.CONTINUE
    sched.on_trial_result(None, _trial("u"), _rung(2.0, 0.5))
    # Cutoff 0.3: 0.1 lies 0.2 below it, far beyond the noise.
    assert sched.on_trial_result(None, _trial("v"), _rung(2.0, 0.1)) == TrialScheduler.STOP
    # Without noise (seed_std 0) the same 0.47 is stopped: the guard is the noise, nothing else.
    bare = ScheduleRungs("bbox_AP", reduction_factor=2)
    bare.on_trial_result(None, _trial("x"), _rung(1.0, 0.50))
    assert bare.on_trial_result(None, _trial("y"), _rung(1.0, 0.47)) == TrialScheduler.STOP


def test_a_rungs_seed_noise_is_measured_from_seeds_of_one_configuration(tmp_path):
    """Seeds of one configuration at a rung (the replicate phase's) replace the prior there."""
    from trainables.contract import row_store

    # Three seeds of one configuration at 1x: 0.40, 0.41, 0.42 (std 0.01); 2x has one seed.
    for seed, ap in enumerate((0.40, 0.41, 0.42)):
        row = {**_config_rung(1.0, ap, lr=0.3), "trial_id": f"r{seed}", "seed": seed, "cost_iterations": 250}
        row_store.write_row(str(tmp_path), {**row, "iteration": 250})
    row_store.write_row(
        str(tmp_path), {**_config_rung(2.0, 0.5, lr=0.3), "trial_id": "r0", "seed": 0, "cost_iterations": 600}
    )
    history = functools.partial(row_store.read_rows, str(tmp_path))
    sched = ScheduleRungs("bbox_AP", reduction_factor=2, history=history, seed_std=0.05)
    sched.on_trial_add(None, _trial("new"))
    sigma, seeds = sched.rungs.noise[("a", 1.0)]
    assert sigma == pytest.approx(0.01) and seeds == 3
    assert ("a", 2.0) not in sched.rungs.noise
    assert sched.rungs.min_gap("a", 1.0) == pytest.approx(NOISE_GAPS * 0.01)
    assert sched.rungs.min_gap("a", 2.0) == pytest.approx(NOISE_GAPS * 0.05)
    # With the measured 0.01 a score 0.05 below the cutoff (0.41) stops; the prior would keep it.
    assert sched.on_trial_result(None, _trial("new"), _rung(1.0, 0.36)) == TrialScheduler.STOP


def test_the_rungs_and_the_reports_ranking_agree_on_near_ties():
    """One rule picks the better of two results everywhere: AP 0.5000 with loss 1 against AP
    0.5005 with loss 8 (the loss moves a score by up to 0.001): the rungs and the report's
    ranking (and so the best trial and the replicate phase's best) both prefer the first."""
    import pandas as pd

    from analysis.results import best_row, ranked

    a = {"bbox_AP": 0.5000, "loss": 1.0, "trial_id": "b", "iteration": 10}
    b = {"bbox_AP": 0.5005, "loss": 8.0, "trial_id": "a", "iteration": 10}
    assert rung_score(a, "bbox_AP") > rung_score(b, "bbox_AP")
    rows = pd.DataFrame([b, a, {"bbox_AP": None, "loss": 0.1, "trial_id": "c", "iteration": 10}])
    assert list(ranked(rows, "bbox_AP")["trial_id"]) == ["b", "a", "c"]
    assert best_row(rows, "bbox_AP")["trial_id"] == "b"
    # Equal scores: the trial id decides, however the rows came.
    tied = pd.DataFrame([{**a, "trial_id": "z"}, {**a, "trial_id": "y"}])
    assert list(ranked(tied, "bbox_AP")["trial_id"]) == ["y", "z"]
    assert list(ranked(tied, "bbox_AP").columns) == list(tied.columns)
