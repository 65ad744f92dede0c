"""The paper's figures from hand-built result rows with known answers: labels, colours,
log axes, the landscape's ticks, the trunk-and-branches plan."""

import pytest

from analysis import figures
from tests.analysis_rows import frame, rows_of, study_frame


@pytest.fixture
def study_rows():
    return study_frame()


def test_figures_have_labels_and_both_colours(study_rows):
    fig = figures.training_curves(study_rows)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "iteration" and ax.get_ylabel() == "bbox_AP (search split)"
    colours = {line.get_color() for line in ax.lines}
    assert {figures.COLOURS["scratch"], figures.COLOURS["pretrained"]} <= colours
    # Scratch's recipe (s2): its trunk from (0, 0), then a dashed branch per schedule from
    # its fork (1x at 67, 2x at 267) to its final result.
    scratch = [line for line in ax.lines if line.get_color() == figures.COLOURS["scratch"]]
    assert list(scratch[0].get_xdata()) == [0, 100, 200] and list(scratch[0].get_ydata()) == [0.0, 0.1, 0.2]
    branches_drawn = [line for line in scratch if line.get_linestyle() == "--"]
    assert [list(line.get_xdata()) for line in branches_drawn] == [[67, 200], [267, 400]]
    assert [line.get_ydata()[1] for line in branches_drawn] == [0.25, 0.55]
    assert fig._suptitle.get_text().startswith("bbox_AP (search split) during training")


def test_ap_vs_images_on_a_log_axis_with_the_pretraining_band(study_rows):
    ax = figures.ap_vs_images(study_rows).axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("images seen (pretraining + detection")
    assert ax.get_ylabel() == "final bbox_AP (test split)" and ax.get_title()
    pretrained = [line for line in ax.lines if line.get_color() == figures.COLOURS["pretrained"]]
    # p2 (the best 2x): its 1x and 2x results (200 and 400 iterations x 4 images), after its
    # 57,600 pretraining images; a band from the detection images alone to that total. The
    # AP drawn is its test split's (search split's minus 0.02 in these rows).
    drawn = [line for line in pretrained if line.get_label().startswith("pretrained (")][0]
    assert list(drawn.get_xdata()) == [57600 + 800, 57600 + 1600] and "57,600 pretraining images" in drawn.get_label()
    assert list(drawn.get_ydata()) == pytest.approx([0.43, 0.50])
    bands = [list(line.get_xdata()) for line in pretrained if line.get_linewidth() == 5]
    assert bands == [[800, 57600 + 800], [1600, 57600 + 1600]]
    lo, hi = ax.get_xlim()
    assert lo < 800 and hi > 57600 + 1600  # detection-only results stay on the axis
    scratch = [line for line in ax.lines if line.get_color() == figures.COLOURS["scratch"]][0]
    assert list(scratch.get_xdata()) == [800, 1600]
    # Pretraining images unknown (real weights without the figure): said, never drawn at 0.
    unknown = study_rows.assign(
        pretrain_images_seen=study_rows["pretrain_images_seen"].where(study_rows["init"] != "pretrained")
    )
    ax = figures.ap_vs_images(unknown).axes[0]
    drawn = [line for line in ax.lines if line.get_label().startswith("pretrained (")][0]
    assert "pretraining images unknown" in drawn.get_label() and list(drawn.get_xdata()) == [800, 1600]


def test_landscape_spans_each_searched_range_with_readable_ticks(study_rows):
    ranges = {
        "scratch-tiny-f1": {"lr": (0.05, 1.0), "weight_decay": (1e-5, 1e-3)},
        "pretrained-tiny-f1": {"lr": (0.1, 0.6), "weight_decay": (3e-5, 3e-4)},
    }
    fig = figures.landscape(study_rows, ranges=ranges)
    assert len(fig.axes) == 4 and fig._suptitle.get_text()  # 2 arms x (lr, weight decay)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["pretrained-tiny-f1"] * 2 + ["scratch-tiny-f1"] * 2
    assert fig.axes[0].title.get_color() == figures.COLOURS["pretrained"]
    for ax, (arm, param) in zip(fig.axes, [(a, p) for a in sorted(ranges) for p in ("lr", "weight_decay")]):
        lo, hi = ranges[arm][param]
        assert ax.get_xscale() == "log" and ax.get_xlim() == pytest.approx((lo / 1.25, hi * 1.25))
        assert ax.get_xlabel().startswith(param.replace("_", " ")) and ax.get_ylabel() == "final bbox_AP (search split)"
        fig.canvas.draw()
        labels = [
            t.get_text() for t in ax.get_xticklabels() if t.get_text() and lo / 1.25 <= t.get_position()[0] <= hi * 1.25
        ]
        assert 2 <= len(labels) <= 8, labels  # a few plain labels (0.1, 0.2, 0.5), never a crowd
        assert not [t for t in ax.get_xticklabels(minor=True) if t.get_text()]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels() if 0.08 <= t.get_position()[0] <= 0.75] == [
        "0.1",
        "0.2",
        "0.5",
    ]
    # Without ranges the axes span the points.
    ax = figures.landscape(study_rows).axes[0]
    assert ax.get_xlim() == pytest.approx((0.3 / 1.25, 0.5 * 1.25))


def test_trunk_and_branches_figure():
    from study.plan.trunk_figure import trunk_and_branches

    fig = trunk_and_branches(500, (1.0, 2.0, 3.0), warmup_iters=100)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    trunk = lines["trunk (peak LR)"]
    assert trunk.get_xdata()[-1] == 1166 and min(trunk.get_ydata()[100:]) == 1.0  # the peak until the 3x fork
    cooldowns = [lines[f"{s}x: branch {a:,} -> {b:,}"] for s, a, b in ((1, 167, 500), (2, 667, 1000), (3, 1167, 1500))]
    assert [(line.get_xdata()[0], line.get_xdata()[-1]) for line in cooldowns] == [(167, 499), (667, 999), (1167, 1499)]
    assert all(min(line.get_ydata()) == pytest.approx(0.01) for line in cooldowns)  # both drops in every branch
    assert ax.get_xlabel() == "iteration" and ax.get_yscale() == "log"


def test_the_trunk_figure_command_draws_a_presets_first_arm(tmp_path, capsys):
    from study.plan.trunk_figure import main

    assert main(["--preset", "toy-paper", str(tmp_path / "t.png")]) == 0
    assert (tmp_path / "t.png").stat().st_size > 10_000
    assert capsys.readouterr().out.strip().endswith("scratch-tiny-f1, schedules 2x, 4x, 8x, 12x")


def test_scaling_figure_axes_and_colours():
    rows = rows_of("a", "scratch", 0.3, 1e-4, 1.0, {1.0: 0.5}) + rows_of(
        "b", "scratch", 0.3, 1e-4, 1.0, {1.0: 0.2}, fraction=0.1
    )
    rows += rows_of("c", "pretrained", 0.3, 1e-4, 1.0, {1.0: 0.4}, fraction=0.1)
    rows += rows_of("d", "pretrained", 0.3, 1e-4, 1.0, {1.0: 0.6})
    ax = figures.scaling_plot(frame(rows)).axes[0]
    assert ax.get_title() and ax.get_xscale() == "log"
    assert ax.get_xlabel() == "training images" and ax.get_ylabel() == "final bbox_AP (test split), best trial"
    lines = {line.get_color(): list(line.get_xdata()) for line in ax.lines}
    assert lines == {figures.COLOURS["scratch"]: [60, 600], figures.COLOURS["pretrained"]: [60, 600]}
