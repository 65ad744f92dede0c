"""Early stopping at schedule rungs (study/scheduler.py) with Ray Tune's real scheduler
interface: per arm and schedule, the loss's tie-break, the recipe never stopped, a gap
within the noise, rungs rebuilt after a restore."""

import functools
import types

from ray import cloudpickle
from ray.tune.schedulers import TrialScheduler

from study.scheduler import LOSS_WEIGHT, ScheduleRungs, rung_score


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
    from trainables import results

    # What a killed study had written (Tune restores its scheduler unpickled, rungs empty):
    # two trials of arm "a" scored 1x; trunk rows never enter a rung.
    for trial_id, ap in (("t1", 0.5), ("t2", 0.4)):
        results.write_row(
            str(tmp_path), {**_rung(1.0, ap), "trial_id": trial_id, "iteration": 250, "cost_iterations": 250}
        )
        results.write_row(
            str(tmp_path),
            {**_rung(1.0, 0.0), "phase": "trunk", "trial_id": trial_id, "iteration": 125, "cost_iterations": 500},
        )
    history = functools.partial(results.read_rows, str(tmp_path))
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


def test_a_gap_within_the_noise_stops_nobody():
    """min_gap: only a score below the cutoff by more than the noise stops its trial."""
    sched = ScheduleRungs("bbox_AP", reduction_factor=2, min_gap=0.02)
    sched.on_trial_result(None, _trial("x"), _rung(1.0, 0.03))
    # Cutoff 0.015 (the median of 0.03 and 0.0): 0.0 is below it by less than 0.02.
    assert sched.on_trial_result(None, _trial("y"), _rung(1.0, 0.0)) == TrialScheduler.CONTINUE
    sched.on_trial_result(None, _trial("u"), _rung(2.0, 0.5))
    # Cutoff 0.3: 0.1 is below it by far more than the noise.
    assert sched.on_trial_result(None, _trial("v"), _rung(2.0, 0.1)) == TrialScheduler.STOP
