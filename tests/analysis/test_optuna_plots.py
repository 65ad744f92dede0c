"""Optuna's plots per arm in the report (analysis/optuna_plots.py), from Optuna studies the
search itself wrote (study/hpo/search.py through build_search, as a study does)."""

import dataclasses

from analysis.report import write_report
from study.hpo.tuning import build_search
from study.spec.presets import TOY
from study.spec.resolved import resolve
from study.workspace import write_study_file


def _searched(folder: str, study, results: dict[str, int]) -> None:
    """Run the search's ask-and-tell: ``results[arm]`` finished trials per arm."""
    resolved = resolve(study)
    write_study_file(folder, resolved, resolved.trial_configs(results_uri=folder, code_version="v", pretrained={}), {})
    search = build_search(resolved, max(results.values()), folder)
    told = {arm: 0 for arm in results}
    for k in range(sum(results.values()) * 3):
        config = search.suggest(f"t{k}")
        if not isinstance(config, dict):  # None: wait; Searcher.FINISHED: every arm's trials given
            break
        arm = config["arm"]
        if told[arm] >= results[arm]:
            search.on_trial_complete(f"t{k}", None, error=True)
            continue
        ap = 0.1 + 0.01 * k + (0.2 if config["lr"] > 0.3 else 0.0)
        result = {"phase": "final", "status": "completed", "arm": arm, "schedule": config["schedule"]}
        result.update(trunk_schedule=config["schedule"], lr=config["lr"], weight_decay=config["weight_decay"])
        search.on_trial_complete(f"t{k}", {**result, "bbox_AP": ap, "loss": 1.0, "trial_id": f"t{k}"})
        told[arm] += 1


def test_each_arm_gets_its_plots_and_an_arm_with_few_results_says_so(tmp_path):
    folder = str(tmp_path / "toy")
    _searched(folder, dataclasses.replace(TOY, num_samples=12), {"scratch-tiny-f1": 12, "pretrained-tiny-f1": 2})
    report = write_report(folder).read_text()
    section = report[report.index("## Optuna's view of each arm's search") :]
    scratch = section[section.index("### scratch-tiny-f1") : section.index("### pretrained-tiny-f1")]
    assert "12 finished result(s), 0 stopped early." in scratch
    for kind in ("history", "parallel", "importances"):
        assert f"(optuna_scratch-tiny-f1_{kind}.png)" in scratch
        assert (tmp_path / "toy" / "report" / f"optuna_scratch-tiny-f1_{kind}.png").stat().st_size > 5000
    pretrained = section[section.index("### pretrained-tiny-f1") :]
    assert "2 finished result(s)" in pretrained and "optuna_pretrained-tiny-f1_history.png" in pretrained
    assert "Parameter importances need 10 finished results (this arm has 2): not drawn" in pretrained
    assert "importances.png" not in pretrained


def test_a_storage_of_the_presets_own_is_read_for_this_folder_only(tmp_path):
    journal = f"journal:{tmp_path / 'shared.log'}"
    study = dataclasses.replace(TOY, num_samples=3, optuna_storage=journal)
    _searched(str(tmp_path / "other"), study, {"scratch-tiny-f1": 3, "pretrained-tiny-f1": 3})
    _searched(str(tmp_path / "mine"), study, {"scratch-tiny-f1": 2, "pretrained-tiny-f1": 1})
    section = write_report(tmp_path / "mine").read_text().split("## Optuna's view of each arm's search")[1]
    assert "### scratch-tiny-f1" in section and "2 finished result(s)" in section  # not the other folder's 3
    assert "3 finished result(s)" not in section
    assert "_Too few finished results for any plot._" in section  # pretrained: 1


def test_no_optuna_database_is_one_line_not_an_error(tmp_path):
    folder = tmp_path / "bare"
    folder.mkdir()
    report = write_report(folder).read_text()
    assert "_No Optuna database beside the results" in report
