"""The study's progress line in the driver's log (study/hpo/study_progress.py): work done
against the plan, this driver's pace, the ETA; on a clock the test moves."""

from study.hpo.study_progress import StudyProgress
from trainables.contract import row_store


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_study_line_counts_rows_of_an_earlier_run_and_tells_the_pace_and_eta(tmp_path):
    # A resumed study: trial a computed 300 iterations in an earlier run.
    for cost in (100, 300):
        row_store.write_row(str(tmp_path), {"trial_id": "a", "cost_iterations": cost, "phase": "trunk"})
    clock, lines = Clock(), []
    progress = StudyProgress(str(tmp_path), planned=2_000, every_s=30, log=lines.append, clock=clock)
    progress.setup()  # as Tune does when the run starts
    assert progress.done == 300
    clock.now += 10
    progress.on_trial_result(1, [], None, {"trial_id": "b", "cost_iterations": 50})
    assert lines == [
        "study: 350 of ~2,000 planned iterations (18%) as of the trials' last evaluations, 5.00 iterations/s over "
        "this driver's 10s, eta 5m30s "
        "(the plan counts no early stopping: stopped trials end it sooner)"
    ]
    clock.now += 20  # within 30 s of the last line: counted, not printed
    progress.on_trial_result(2, [], None, {"trial_id": "a", "cost_iterations": 450})
    assert len(lines) == 1 and progress.done == 500
    clock.now += 10
    progress.on_trial_result(3, [], None, {"trial_id": "b", "cost_iterations": 40})  # older: no step back
    assert len(lines) == 2 and progress.done == 500 and "5.00 iterations/s over this driver's 40s" in lines[-1]
    progress.on_trial_result(4, [], None, {"note": "no cost"})
    assert len(lines) == 2


def test_a_replicate_round_starts_from_none_and_says_nothing_before_work_is_done(tmp_path):
    row_store.write_row(str(tmp_path), {"trial_id": "a", "cost_iterations": 900, "phase": "final"})
    clock, lines = Clock(), []
    progress = StudyProgress(str(tmp_path), 100, 30, "replicates", counted=False, log=lines.append, clock=clock)
    assert progress.done == 0
    progress.on_trial_result(1, [], None, {"trial_id": "r", "cost_iterations": 0})
    assert lines == []  # no pace yet
    clock.now += 4
    progress.on_trial_result(2, [], None, {"trial_id": "r", "cost_iterations": 120})
    assert lines[0].startswith("replicates: 120 of ~100 planned iterations (100%) as of the trials' last")
    assert "30.00 iterations/s" in lines[0]
    assert "eta 0s" in lines[0]
