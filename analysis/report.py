"""``python -m analysis.report DIR/NAME [--out OUTDIR]``: the study's tables and figures.

Writes ``report.md`` and PNG figures (default ``DIR/NAME/report/``) and prints where. Missing
or partial data never crashes it: the report says what is missing instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import answer, figures, replicates, tables
from analysis.results import final_rows, load_results, trial_rows
from trainables.rows import COLUMNS, COMPLETED, DIVERGED, STUDY_FILE


def read_study(study_dir: str | os.PathLike) -> dict[str, Any]:
    """The study folder's study.json as a dict ({} when there is none)."""
    path = Path(study_dir) / STUDY_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def search_ranges(study: dict[str, Any]) -> dict[str, dict[str, tuple[float, float]]]:
    """arm -> its searched lr and weight-decay ranges, from study.json's ``search_spaces``
    (each arm's ranges with the preset's per-arm overrides applied)."""
    spaces = study.get("search_spaces") or {}
    return {
        arm: {"lr": tuple(space["lr"]), "weight_decay": tuple(space["weight_decay"])} for arm, space in spaces.items()
    }


def recipes(study: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """arm -> the recipe's (lr, weight_decay): study.json's arm configs carry it."""
    return {arm: (float(t["lr"]), float(t["weight_decay"])) for arm, t in (study.get("arms") or {}).items()}


def split_notes(study_dir: Path) -> list[str]:
    """What the trials recorded about the search and test splits (subsets/splits-seed-*.json)."""
    lines = []
    for path in sorted((study_dir / "subsets").glob("splits-seed-*.json")):
        blob = json.loads(path.read_text())
        search, test = blob.get("search") or {}, blob.get("test")
        where = "held out of the training images" if search.get("held_out_of_training") else search.get("annotations")
        lines.append(
            f"search split: {search.get('images')} images ({where}); "
            + (f"test split: {test['images']} images ({test['annotations']})" if test else "no test split")
            + f"; ids in `subsets/{path.name}`"
        )
    return lines


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency); AP columns get 3 decimals."""
    if df.empty:
        return "_(no rows)_"
    cells = [[_fmt(v, "AP" in col) for col, v in zip(df.columns, row)] for row in df.itertuples(index=False)]
    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    return "\n".join([header, rule, *("| " + " | ".join(r) + " |" for r in cells)])


def _fmt(value: Any, is_ap: bool) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if is_ap else f"{value:.4g}"
    return str(value)


# Each init's best result per schedule with every AP column, beside the report.
WIDE_CSV = "scratch_vs_pretrained.csv"
# The equivalence margin when study.json is missing: the COCO presets' (study/config.py).
DEFAULT_MARGIN = 0.005


def write_report(study_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write report.md and the figures; return the report's path."""
    study_dir = Path(study_dir)
    out_dir = Path(out) if out else study_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    study = read_study(study_dir)
    objective = (study.get("preset") or {}).get("objective", "bbox_AP")
    ranges = search_ranges(study)
    notes: list[str] = []
    margin = (study.get("preset") or {}).get("equivalence_margin")
    if margin is None:
        margin = DEFAULT_MARGIN
        notes.append(f"The study's equivalence margin is unknown (no study.json): ±{margin:g} AP is assumed.")
    try:
        df = load_results(study_dir)
    except FileNotFoundError as err:
        df = pd.DataFrame()
        notes.append(f"No evaluation rows: {err}.")
    if not study:
        notes.append(f"No {STUDY_FILE} next to the results: search ranges and the preset are unknown.")

    final = final_rows(df) if not df.empty else df
    trials = trial_rows(df) if not df.empty else df
    if not df.empty:
        status = final["status"].value_counts()
        if not status.get(COMPLETED, 0):
            notes.append("No schedule has a final result yet: the tables of best results are empty.")
        if (trials["trial_status"] == DIVERGED).all():
            notes.append("Every trial diverged (NaN/inf loss): lower the learning-rate range.")
        for init in ("scratch", "pretrained"):
            if init not in set(trials["init"]):
                notes.append(f"The study has no {init} arm, so scratch and pretrained cannot be compared.")
        if df[objective].isna().all():
            notes.append(f"No trial reported {objective}.")
        has_test = f"test_{objective}" in final and final[f"test_{objective}"].notna().any()
        if status.get(COMPLETED, 0) and not has_test:
            notes.append(
                "No test-split numbers: the study has no test split (data.test_images/test_annotations), so "
                "the `test_*` columns are empty, and the search-split numbers shown chose the results they show "
                "(biased upward)."
            )

    is_coco = any((a.get("data") or {}).get("source") == "coco" for a in (study.get("arms") or {}).values())
    figs = {
        "training_curves.png": figures.training_curves,
        "ap_vs_images.png": figures.ap_vs_images,
        "landscape.png": lambda data, objective: figures.landscape(data, objective, ranges),
    }
    if not df.empty and df["data_fraction"].nunique() > 1:
        figs["scaling.png"] = figures.scaling_plot
    written = []
    data = df if not df.empty else _empty_frame()
    # Best results come from the search's own trials (the study's seed): a replicate seed's
    # result is one draw of seed noise, and the best of several draws is biased upward.
    seed = (study.get("preset") or {}).get("seed", 0)
    searched = data[data["seed"] == seed] if not data.empty else data
    if len(searched) < len(data):
        notes.append(
            f"Tables and figures of best results use the search's own trials (seed {seed}); the other seeds' "
            "results are in the seed replicates section."
        )
    tables.scratch_vs_pretrained(searched, objective, with_paper=is_coco, recipes=recipes(study)).to_csv(
        out_dir / WIDE_CSV, index=False
    )
    for name, make in figs.items():
        fig = make(searched, objective)
        fig.savefig(out_dir / name, dpi=110)
        figures.plt.close(fig)
        written.append(name)

    rows = replicates.replicate_rows(data, recipes(study), objective)
    gaps = replicates.gap_intervals(rows, margin) if not rows.empty else None
    if gaps is not None and gaps.empty:  # replicated in one init only: no gap to judge
        gaps = None
    sections = [
        f"# Study report: {(study.get('preset') or {}).get('name', study_dir.name)}",
        "",
        f"Results: `{study_dir}` — {len(trials)} trials, {len(final)} schedule results, {len(df)} evaluations; "
        f"objective `{objective}`. AP values are fractions (the paper prints percent).",
        "",
        *_answer_section(searched, objective, margin, gaps, is_coco, rows),
        "## How to read it",
        "",
        "Every trial trains one peak-LR trunk and scores each schedule of its arm up to its own on a "
        "branch: from the schedule's first LR drop, its cooldown to its end. A schedule's result is that "
        "of an independent run of it with the same seed.",
        "",
        "Two evaluation splits: the **search split** scored every decision (Optuna's search, early stopping, "
        "which trial is best); the **test split** scored each schedule's final model at the same moment and "
        "decided nothing. Tables lead with the test split (`test_*`); the search split's numbers "
        "(unprefixed) stand beside them and are biased upward by the choice they made.",
        "",
        *[f"- {line}" for line in split_notes(study_dir)],
    ]
    if notes:
        sections += ["", "## What is missing", "", *[f"- {n}" for n in notes]]
    warnings = tables.boundary_warnings(searched, ranges, objective)
    if warnings:
        sections += [
            "",
            "## Warnings: best values at the edge of the searched range",
            "",
            *[f"- {w}" for w in warnings],
        ]
    sections += [
        "",
        "## Each init's recipe at every schedule (the paper's Table 1 design)",
        "",
        markdown_table(tables.recipe_table(searched, recipes(study), objective)),
        "",
        "The recipe (each arm's first trial, never stopped early) scored at every schedule of its set; the test "
        "split where there is one. Each init's best result per schedule, with the search split's numbers and "
        f"the other APs beside it, is in `{WIDE_CSV}` next to this report.",
        "",
        *(
            [
                "## Six metrics at each init's best schedule (paper Table 2)",
                "",
                markdown_table(tables.table2(searched, objective)),
                "",
                "The result best on the search split over all schedules, on all of train2017, with its test-split "
                "(val2017) metrics; `paper_*` = the paper's Table 2.",
                "",
            ]
            # Table 2 is the instance-segmentation study's; a keypoint study has Sec. 5.1 in its lead.
            if is_coco and objective in ("bbox_AP", "segm_AP")
            else []
        ),
        "## Best result per arm and schedule",
        "",
        markdown_table(tables.best_by_schedule(searched, objective)),
        "",
        "## Training curves (paper Figs. 1, 3, 4)",
        "",
        "![training curves](training_curves.png)",
        "",
        "## AP against all images seen, pretraining included (paper Fig. 2)",
        "",
        "![AP vs images](ap_vs_images.png)",
        "",
        "## Hyperparameter landscape per arm",
        "",
        "![landscape](landscape.png)",
    ]
    if "scaling.png" in written:
        sections += [
            "",
            "## Scaling with training-set size (paper Sec. 5.2)",
            "",
            markdown_table(tables.scaling(searched, objective, with_paper=is_coco)),
            "",
            "![scaling](scaling.png)",
        ]
    sections += ["", "## Budget", "", markdown_table(tables.budget(data))]
    sections += ["", "## Seed replicates (paper Table 1's gaps against seed noise)", ""]
    if gaps is None:
        sections.append(
            "_No configuration was scored under two or more seeds in both inits: run the study with "
            "`--replicates K` for the seed noise of each arm's recipe and best settings, and an interval for the "
            "gap._"
        )
    else:
        split = "test" if replicates.value_column(data, objective).startswith("test_") else "search"
        sections += [
            *[f"- **{line}**" for line in replicates.headline(gaps, rows)],
            "",
            markdown_table(replicates.summary_table(gaps)),
            "",
            f"{objective} on the {split} split, mean ± std over seeds (model init, data order and, for the "
            "generated pretraining, the pretraining; the training images stay the same; real ImageNet weights are "
            "one fixed checkpoint), per configuration: `recipe` = the preset's lr and weight decay, `best` = the "
            "arm's best on the search split, `recipe = best` where the recipe was that best. `delta_AP` = "
            "scratch − pretrained, with Welch's 95% and 90% intervals over seeds. The verdict: **equivalent** "
            f"when the 90% interval lies inside ±{margin:g} (two one-sided tests at 5%), **behind**/**ahead** when "
            "the 95% interval excludes 0 and the gap is not equivalent, **inconclusive** otherwise, with about how "
            "many seeds per init would settle it.",
            "",
            *[f"- {replicates.verdict(g)}" for _, g in gaps.iterrows()],
        ]
    report = out_dir / "report.md"
    report.write_text("\n".join(sections) + "\n")
    return report


def _answer_section(
    df: pd.DataFrame,
    objective: str,
    margin: float,
    gaps: pd.DataFrame | None,
    with_paper: bool,
    rows: pd.DataFrame | None = None,
) -> list[str]:
    """The lead: Table 1's shape per (model, data fraction), and the verdict's headline."""
    lines = ["## The answer: scratch vs. pretrained per schedule (paper Table 1)", ""]
    if gaps is not None:
        lines += [*[f"- **{line}**" for line in replicates.headline(gaps, rows)], ""]
    tables_ = answer.answer_tables(df, objective, margin, gaps, with_paper, rows) if not df.empty else []
    if not tables_:
        lines += ["_No schedule has a completed final result yet._", ""]
    for title, table in tables_:
        lines += [f"{title}:", "", markdown_table(table), ""]
    if tables_ and gaps is None:
        lines += [
            "Each cell is one seed's result: it has no interval, so no verdict is drawn from it. Run with "
            "`--replicates K` (or the `toy-replicates` preset) for mean ± std over seeds and an equivalence "
            f"verdict against the margin ±{margin:g}. Pretrained's change from schedule to schedule is read along "
            "one trial, the one of its longest schedule's cell, which scored every shorter schedule on a branch of "
            "the same trunk: the cells above it are each the best on the search split and may come from different "
            "trials.",
            "",
        ]
    return lines


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(columns=list(COLUMNS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="the study folder DIR/NAME")
    parser.add_argument("--out", help="output folder (default: DIR/NAME/report)")
    args = parser.parse_args(argv)
    if not Path(args.study).is_dir():
        parser.error(f"{args.study} is not a study folder")
    report = write_report(args.study, args.out)
    pngs = sorted(p.name for p in report.parent.glob("*.png"))
    print(f"wrote {report} and {len(pngs)} figures ({', '.join(pngs)}) in {report.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
