"""``python -m analysis.report DIR/NAME [--out OUTDIR]``: the study's tables and figures.

Writes ``report.md`` and PNG figures (default ``DIR/NAME/report/``) and prints where. Missing
or partial data never crashes it: the report says what is missing instead. Each section is
one function of a :class:`Inputs`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import answer, figures, headline, optuna_plots, record, tables
from analysis.record import read_study, recipes, search_ranges  # noqa: F401  (the report's readers, re-exported)
from analysis.results import final_rows, load_results, trial_rows
from analysis.stats import regime, replicates
from analysis.stats.rank_agreement import rank_agreement
from trainables.contract.rows import COLUMNS, COMPLETED, DIVERGED, STUDY_FILE
from trainables.contract.study_record import StudyRecord

# Each init's best result per schedule with every AP column, beside the report.
WIDE_CSV = "scratch_vs_pretrained.csv"
# The paper's own pretrained weights (Detectron's GN ResNets): only beside these do the
# paper's numbers stand (another checkpoint answers another question).
PAPER_WEIGHTS = ("/R-50-GN.pkl", "/R-101-GN.pkl")


@dataclass
class Inputs:
    """Everything the sections read, loaded once."""

    study_dir: Path
    study: StudyRecord
    objective: str
    df: pd.DataFrame  # every row
    searched: pd.DataFrame  # the search's own trials (the study's seed)
    seed: int
    margin: Any  # (model, data fraction) -> δ
    rows: pd.DataFrame  # replicate_rows'
    gaps: pd.DataFrame | None
    notes: list[str]
    with_paper: bool


def load_inputs(study_dir: Path) -> Inputs:
    study = record.read_study(study_dir)
    objective = study.objective
    margin, notes = record.margins(study)
    try:
        df = load_results(study_dir)
    except FileNotFoundError as err:
        df = pd.DataFrame(columns=list(COLUMNS))
        notes.append(f"No evaluation rows: {err}.")
    if not study.preset and not study.arms:
        notes.append(f"No {STUDY_FILE} next to the results: search ranges and the preset are unknown.")
    seed = study.seed
    # Best results come from the search's own trials (the study's seed): a replicate seed's
    # result is one draw of seed noise, and the best of several draws is biased upward.
    searched = df[df["seed"] == seed] if not df.empty else df
    if len(searched) < len(df):
        notes.append(
            f"Tables of best results and figures use the search's own trials (seed {seed}); the other seeds' "
            "results are in the recipe table and the seed replicates section."
        )
    configs = replicates.planned_configs(df, record.recipes(study), record.read_replicates(study_dir), seed, objective)
    rows = replicates.replicate_rows(df, configs, seed, objective)
    gaps = replicates.gap_intervals(rows, margin) if not rows.empty else None
    if gaps is not None and gaps.empty:  # replicated in one init only: no gap to judge
        gaps = None
    arms = study.arms.values()
    is_coco = any((a.get("data") or {}).get("source") == "coco" for a in arms)
    weights = [a.get("pretrained_weights", "") for a in arms if a.get("init") == "pretrained"]
    paper_weights = all(w.endswith(PAPER_WEIGHTS) for w in weights)
    return Inputs(study_dir, study, objective, df, searched, seed, margin, rows, gaps, notes, is_coco and paper_weights)


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


def write_report(study_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write report.md and the figures; return the report's path."""
    study_dir = Path(study_dir)
    out_dir = Path(out) if out else study_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    i = load_inputs(study_dir)
    i.notes += data_notes(i)
    tables.scratch_vs_pretrained(
        i.searched, i.objective, with_paper=i.with_paper, recipes=record.recipes(i.study)
    ).to_csv(out_dir / WIDE_CSV, index=False)
    written = draw_figures(i, out_dir)
    name = i.study.name or study_dir.name
    trials = trial_rows(i.df) if not i.df.empty else i.df
    sections = [
        f"# Study report: {name}",
        "",
        f"Results: `{study_dir}` — {len(trials)} trials, {len(final_rows(i.df)) if not i.df.empty else 0} schedule "
        f"results, {len(i.df)} evaluations; objective `{i.objective}`. AP values are fractions (the paper prints "
        "percent).",
        "",
        *answer_section(i),
        *reading_section(i),
        *regime_section(i),
        *missing_section(i),
        *detail_section(i, written),
        *early_stopping_section(i),
        *replicates_section(i),
        *optuna_plots.optuna_section(str(study_dir), i.study, out_dir),
    ]
    report = out_dir / "report.md"
    report.write_text("\n".join(sections) + "\n")
    return report


def data_notes(i: Inputs) -> list[str]:
    """What the rows cannot answer."""
    if i.df.empty:
        return []
    notes = []
    final, trials = final_rows(i.df), trial_rows(i.df)
    status = final["status"].value_counts()
    if not status.get(COMPLETED, 0):
        notes.append("No schedule has a final result yet: the tables of results are empty.")
    if (trials["trial_status"] == DIVERGED).all():
        notes.append("Every trial diverged (NaN/inf loss): lower the learning-rate range.")
    for init in ("scratch", "pretrained"):
        if init not in set(trials["init"]):
            notes.append(f"The study has no {init} arm, so scratch and pretrained cannot be compared.")
    if i.df[i.objective].isna().all():
        notes.append(f"No trial reported {i.objective}.")
    has_test = f"test_{i.objective}" in final and final[f"test_{i.objective}"].notna().any()
    if status.get(COMPLETED, 0) and not has_test:
        notes.append(
            "No test-split numbers: the study has no test split (data.test_images/test_annotations), so the "
            "`test_*` columns are empty, and the search-split numbers shown chose the results they show "
            "(biased upward)."
        )
    return notes


def draw_figures(i: Inputs, out_dir: Path) -> list[str]:
    ranges = record.search_ranges(i.study)
    figs = {
        "training_curves.png": figures.training_curves,
        "ap_vs_images.png": figures.ap_vs_images,
        "landscape.png": lambda data, objective: figures.landscape(data, objective, ranges),
    }
    if not i.df.empty and i.df["data_fraction"].nunique() > 1:
        figs["scaling.png"] = figures.scaling_plot
    for name, make in figs.items():
        fig = make(i.searched, i.objective)
        fig.savefig(out_dir / name, dpi=110)
        figures.plt.close(fig)
    return list(figs)


def answer_section(i: Inputs) -> list[str]:
    """The lead: the verdict's headline (primary first), recipe against recipe in Table 1's
    shape, then the best of the search with N in every cell."""
    lines = ["## The answer: scratch vs. pretrained per schedule (paper Table 1)", ""]
    if i.gaps is not None:
        lines += [*[f"- **{line}**" for line in headline.headline(i.gaps, i.rows)], ""]
    else:
        regimes = {}
        for p in record.regime_points(i.study, i.df, i.study_dir):
            close = regime.nearest(p)
            if close is not None:
                regimes[p.key] = f"nearest the paper's {close.name}, where {close.outcome}"
        words = answer.one_seed_lines(i.df, i.objective, record.recipes(i.study), i.margin, i.seed, regimes)
        lines += [*[f"- **{line}**" for line in words], ""] if words else []
    lead = answer.recipe_tables(
        i.df, i.objective, record.recipes(i.study), i.margin, i.gaps, i.rows, i.seed, i.with_paper
    )
    if not lead and not record.recipes(i.study):
        lines += ["_The recipes are unknown (no arms in study.json), so the lead table cannot be drawn._", ""]
    elif not lead:
        lines += ["_No recipe has a completed final result yet._", ""]
    for title, table in lead:
        lines += [f"{title}:", "", markdown_table(table), ""]
    if lead and i.gaps is None:
        lines += [
            "Each cell is one seed's result of the recipe: it has no interval, so no verdict is drawn from it. Run "
            "with `--replicates K` (or the `toy-replicates` preset) for mean ± std over seeds and the "
            "non-inferiority verdict. Each init's change from schedule to schedule is read along its recipe trial's "
            "branches, one trunk.",
            "",
        ]
    best = answer.best_tables(i.searched, i.objective)
    if best:
        lines += [
            "### Best of the search (secondary)",
            "",
            "Each cell is the trial best on the search split among the N that scored that schedule. The search and "
            "test scores come from one model, so the test value keeps part of the luck that chose it: compare "
            "recipe with recipe for the answer, and the replicate section's best, rerun on fresh seeds.",
            "",
        ]
        for title, table in best:
            lines += [f"{title}:", "", markdown_table(table), ""]
    return lines


def reading_section(i: Inputs) -> list[str]:
    images = record.test_images(i.study_dir)
    return [
        "## How to read it",
        "",
        "The paper's claim is one-sided: scratch is **no worse** than pretrained. The verdict is a non-inferiority "
        "test per schedule, on Δ = scratch − pretrained over seeds (Welch's t): **no worse** when the 90% interval "
        "of Δ lies above −δ (the one-sided test of Δ ≤ −δ rejects at 5%), **worse** when it lies below −δ, "
        "**inconclusive** otherwise, with the seeds per init that would settle it. Beside it: **equivalent** (the "
        "90% interval inside ±δ) and a significant difference (the 95% interval excludes 0: scratch ahead or "
        "behind). A gap that is not significant is never read as a match. δ is each comparison's margin, fixed "
        "before the study ran (below). Seeds that diverged enter at AP 0 and are counted; seeds without a result "
        "are counted and left out.",
        "",
        "The intervals are of seed noise (model init, data order, generated pretraining) and conditional on this "
        f"test set{f' of {images} images' if images else ''}: every seed of both inits is scored on the same images, "
        "so the set's own sampling noise is shared by both sides of Δ, but a different test set could move both. "
        "The rows keep no per-image detections to resample.",
        "",
        "Every trial trains one peak-LR trunk and scores each schedule of its arm up to its own on a branch: from "
        "the schedule's first LR drop, its cooldown to its end. Two evaluation splits: the **search split** scored "
        "every decision (Optuna's search, early stopping, which trial is best); the **test split** scored each "
        "schedule's final model at the same moment and decided nothing.",
        "",
        *[f"- {line}" for line in record.split_notes(i.study_dir)],
        "",
        "Non-inferiority margins, as study.json recorded them before the first trial:",
        "",
        *[f"- {line}" for line in record.margin_lines(i.study)],
        "",
    ]


def regime_section(i: Inputs) -> list[str]:
    points = record.regime_points(i.study, i.df, i.study_dir)
    if not points:
        return []
    return [
        "## Regime: target data against what pretraining saw (paper Sec. 5.2)",
        "",
        *[f"- {regime.describe(p)}" for p in points],
        *[f"- {line}" for line in record.pretraining_lines(i.study_dir)],
        "",
        "The paper's points, in the same ratios:",
        "",
        *[f"- {line}" for line in regime.paper_lines()],
        "",
    ]


def missing_section(i: Inputs) -> list[str]:
    lines = []
    if i.notes:
        lines += ["## What is missing", "", *[f"- {n}" for n in i.notes], ""]
    warnings = tables.boundary_warnings(i.searched, record.search_ranges(i.study), i.objective)
    if warnings:
        lines += ["## Warnings: best values at the edge of the searched range", "", *[f"- {w}" for w in warnings], ""]
    return lines


def detail_section(i: Inputs, written: list[str]) -> list[str]:
    lines = []
    if i.with_paper and i.objective in ("bbox_AP", "segm_AP"):
        lines += [
            "## Six metrics of each init's recipe (paper Table 2)",
            "",
            markdown_table(tables.table2(i.searched, record.recipes(i.study))),
            "",
            "Each init's recipe at the schedule of the paper's row (6x; R101 pretrained 3x), on all of train2017, with "
            "its test-split (val2017) metrics; `paper_*` = the paper's Table 2.",
            "",
        ]
    lines += [
        "## Best result per arm and schedule",
        "",
        markdown_table(tables.best_by_schedule(i.searched, i.objective)),
        "",
        f"`trials`: the N that scored the schedule. Each init's best per schedule with every AP is in `{WIDE_CSV}`.",
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
        "",
    ]
    if "scaling.png" in written:
        lines += [
            "## Scaling with training-set size (paper Sec. 5.2)",
            "",
            markdown_table(tables.scaling(i.searched, i.objective, with_paper=i.with_paper)),
            "",
            "![scaling](scaling.png)",
            "",
        ]
    return [*lines, "## Budget", "", markdown_table(tables.budget(i.df)), ""]


def early_stopping_section(i: Inputs) -> list[str]:
    agreement = rank_agreement(i.searched, i.objective) if not i.df.empty else pd.DataFrame()
    if agreement.empty:
        return []
    return [
        "## Early stopping: did the shorter schedules rank trials as the longest did?",
        "",
        markdown_table(agreement),
        "",
        "Spearman's rank correlation between each schedule's search-split result and the arm's longest, over the "
        "trials that scored both (nan below 3). Measured on the trials that survived the rungs, so a low value is a "
        "warning that early rungs may have stopped trials that would have ranked well late; a high one speaks for "
        "the survivors only.",
        "",
    ]


def replicates_section(i: Inputs) -> list[str]:
    lines = ["## Seed replicates (paper Table 1's gaps against seed noise)", ""]
    if i.gaps is None:
        return lines + [
            "_No configuration was scored under two or more seeds in both inits: run the study with `--replicates "
            "K` for the seed noise of each arm's recipe and best settings, and the verdict._"
        ]
    split = "test" if replicates.value_column(i.df, i.objective).startswith("test_") else "search"
    return lines + [
        markdown_table(headline.summary_table(i.gaps)),
        "",
        f"{i.objective} on the {split} split, mean ± std over seeds (model init, data order and, for the generated "
        "pretraining, the pretraining; the training images stay the same; real ImageNet weights are one fixed "
        "checkpoint). `recipe`: each init's preset lr and weight decay, every seed (the primary reading). `best`: each "
        "arm's best on the search split, on fresh seeds only (the search trial that won the choice is left out). "
        "`seeds needed`: per init, for 80% power to show no worse if the true gap were 0 / the observed one; σ from "
        "three seeds is good to a factor of about 0.65-2.4, so the counts to about 0.4-5.6.",
        "",
        *[f"- {headline.schedule_line(g)}" for _, g in i.gaps.iterrows()],
    ]


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
