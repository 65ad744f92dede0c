"""Optuna's own plots of each arm's search, for the report: the optimization history,
parallel coordinates over (lr, weight decay, schedule) and, where there are enough trials,
the parameter importances (Optuna's fANOVA), drawn by ``optuna.visualization.matplotlib``
from the study's Optuna storage (trainables/contract/optuna_store.py).

Each finished Optuna trial is one schedule's final result: a trial that scored 1x and 2x
on its branches is two points (study/hpo/search.py). An arm with few of them gets the plots
that still show its points and a sentence on what they cannot show; a study whose storage
cannot be read gets one note instead of plots.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402

from trainables.contract import optuna_store, storage  # noqa: E402
from trainables.contract.study_record import StudyRecord  # noqa: E402

# Finished trials an arm needs for each plot to mean more than its points: importances
# from fANOVA's forest on fewer than this are noise.
MIN_HISTORY = 2
MIN_PARALLEL = 3
MIN_IMPORTANCE = 10
PARAMS = ("lr", "weight_decay", "schedule")


def storage_url(study_dir: str, record: StudyRecord) -> tuple[str, str | None]:
    """(URL, temporary file) of the study's Optuna storage: the preset's own, else the
    folder's optuna.db (fetched to a temporary file from an s3:// folder)."""
    url = (record.preset or {}).get("optuna_storage") or ""
    if url:
        return url, None
    path = storage.join(study_dir, optuna_store.DEFAULT_FILE)
    if not storage.is_uri(study_dir):
        return (f"sqlite:///{os.path.abspath(path)}" if os.path.exists(path) else ""), None
    if not storage.exists(path):
        return "", None
    fd, local = tempfile.mkstemp(suffix=".db")
    with os.fdopen(fd, "wb") as f:
        f.write(storage.read_bytes(path))
    return f"sqlite:///{local}", local


def optuna_section(study_dir: str, record: StudyRecord, out_dir: Path) -> list[str]:
    """The report's section: per arm its plots (PNG files in ``out_dir``) and what they show."""
    lines = ["## Optuna's view of each arm's search", ""]
    url, temporary = storage_url(str(study_dir), record)
    if not url:
        return [*lines, "_No Optuna database beside the results (a --trial study, or none written yet)._", ""]
    try:
        loaded = _load(url, str(study_dir), record)
    except Exception as err:  # a damaged or unreachable storage: the rest of the report stands
        return [*lines, f"_The Optuna storage {url} could not be read ({type(err).__name__}: {err})._", ""]
    finally:
        if temporary:
            os.unlink(temporary)
    if not loaded:
        return [*lines, f"_No arm's study in {url}._", ""]
    lines += [
        "Each point is one schedule's final result (a trial that scored 1x and 2x on its branches is two), as "
        f"Optuna was told it; the objective is the search split's. Importances need {MIN_IMPORTANCE} finished "
        "results or more.",
        "",
    ]
    for arm, study in loaded.items():
        lines += _arm_plots(arm, study, out_dir)
    return lines


def _load(url: str, study_dir: str, record: StudyRecord) -> dict[str, optuna.Study]:
    """arm -> its Optuna study; in a storage of the preset's own, only this folder's."""
    db = optuna_store.open_url(url)
    names = {s.study_name for s in optuna.get_all_study_summaries(db)}
    own = (record.preset or {}).get("optuna_storage") or ""
    arms = list(record.arms) or sorted(names)
    found = {}
    for arm in arms:
        name = optuna_store.study_name(study_dir, arm, own)
        if name in names:
            found[arm] = optuna.load_study(study_name=name, storage=db)
    return found


def _arm_plots(arm: str, study: optuna.Study, out_dir: Path) -> list[str]:
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.get_trials(deepcopy=False))
    lines = [f"### {arm}", "", f"{len(done)} finished result(s), {pruned} stopped early."]
    if len(done) < MIN_HISTORY:
        return [*lines, "", "_Too few finished results for any plot._", ""]
    params = [p for p in PARAMS if len({t.params.get(p) for t in done}) > 1]
    plots = {"history": lambda: optuna.visualization.matplotlib.plot_optimization_history(study)}
    if len(done) >= MIN_PARALLEL and params:
        plots["parallel"] = lambda: optuna.visualization.matplotlib.plot_parallel_coordinate(study, params=params)
    if len(done) >= MIN_IMPORTANCE and len(params) > 1:
        plots["importances"] = lambda: optuna.visualization.matplotlib.plot_param_importances(study, params=params)
    images = []
    for kind, draw in plots.items():
        name = f"optuna_{arm}_{kind}.png"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning: the matplotlib backend is marked so
            ax = draw()
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(7, 4)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        images.append(f"![{arm} {kind}]({name})")
    if "parallel" not in plots:
        lines.append(f"Parallel coordinates need {MIN_PARALLEL} finished results and a searched value that varies.")
    if "importances" not in plots:
        lines.append(
            f"Parameter importances need {MIN_IMPORTANCE} finished results (this arm has {len(done)}): not drawn, "
            "as an importance from fewer is noise."
        )
    return [*lines, "", *images, ""]
