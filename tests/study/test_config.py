"""Frozen configs: round trips through dicts/JSON, and clear errors for bad values."""

import dataclasses
import json

import pytest

from study.spec.presets import PRESETS, SMOKE, TOY
from study.spec.resolved import arm_spec, base_trial, resolve
from study.spec.study_config import Arm, arms
from trainables.contract.config_io import from_dict
from trainables.contract.trial_config import ConfigError, DataConfig, ModelConfig, SolverConfig, TrialConfig


def _trial(**changes):
    d = base_trial(SMOKE, Arm("scratch", 1.0, "tiny"), results_uri="/tmp/x", code_version="v", pretrained={})
    d.update(changes)
    return d


def test_round_trip_through_json():
    d = _trial()
    cfg = from_dict(TrialConfig, json.loads(json.dumps(d)))
    assert cfg.model.anchor_sizes == (8, 16, 32, 64, 128)  # lists come back as tuples
    assert dataclasses.asdict(cfg) == d
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match="unknown field model.dept"):
        from_dict(TrialConfig, {**_trial(), "model": {"dept": 50}})
    with pytest.raises(ConfigError, match="unknown field lrr"):
        from_dict(TrialConfig, {**_trial(), "lrr": 0.1})


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"lr": -0.1}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"schedule": 0}, "schedule"),
        ({"data_fraction": 1.5}, "data_fraction"),
        ({"init": "imagenet"}, "init"),
        ({"lr": "fast"}, "lr"),
    ],
)
def test_bad_values_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        from_dict(TrialConfig, _trial(**changes))


def test_scratch_cannot_use_frozen_bn():
    d = _trial()
    d["model"] = {**d["model"], "norm": "frozenbn"}
    with pytest.raises(ConfigError, match="frozen BN"):
        from_dict(TrialConfig, d)


def test_component_validation():
    with pytest.raises(ConfigError, match="model.norm"):
        ModelConfig(norm="bn")
    with pytest.raises(ConfigError, match="model.width"):
        ModelConfig(width=48, gn_groups=32)
    with pytest.raises(ConfigError, match="data.max_size"):
        DataConfig(min_size=(800,), max_size=600)
    with pytest.raises(ConfigError, match="solver.gamma"):
        SolverConfig(gamma=0)


def test_a_keypoint_task_is_one_switch_that_generated_data_must_agree_with():
    with pytest.raises(
        ConfigError, match=r"data.keypoints=True is invalid: expected equal to data.synthetic.keypoints"
    ):
        DataConfig(keypoints=True)
    assert DataConfig(source="coco", keypoints=True).keypoints
    # Keypoint AP is an objective of a keypoint task only.
    with pytest.raises(ConfigError, match="objective='keypoints_AP' is invalid: expected bbox_AP or segm_AP"):
        dataclasses.replace(TOY, objective="keypoints_AP")
    assert PRESETS["toy-keypoints"].objective == "keypoints_AP" and PRESETS["toy-keypoints"].data.keypoints


def test_presets_are_consistent():
    for preset in PRESETS.values():
        for model in preset.axes.model:
            assert model in preset.models
    # The smoke runs exercise DDP; the toy runs two one-worker trials at once.
    assert SMOKE.num_workers == 2 and TOY.num_workers == 1 and TOY.solver.ims_per_worker == 2
    assert set(SMOKE.axes.init) == {"scratch", "pretrained"}
    assert arm_spec(TOY, Arm("pretrained", 1.0, "tiny")).space == TOY.search


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_arm_starts_from_a_recipe_inside_its_ranges(name):
    preset = PRESETS[name]
    for arm in arms(preset):
        point, space = arm_spec(preset, arm).recipe, arm_spec(preset, arm).space
        assert point["schedule"] in space.schedule, (arm, point, space)
        assert (
            space.lr[0] <= point["lr"] <= space.lr[1]
            and space.weight_decay[0] <= point["weight_decay"] <= space.weight_decay[1]
        )


def test_syncbn_needs_gpus_with_several_workers():
    d = _trial()
    d["model"] = {**d["model"], "norm": "syncbn"}
    with pytest.raises(ConfigError, match="SyncBatchNorm runs on GPUs only"):
        from_dict(TrialConfig, d)
    assert from_dict(TrialConfig, {**d, "use_gpu": True}).model.norm == "syncbn"
    assert from_dict(TrialConfig, {**d, "num_workers": 1}).model.norm == "syncbn"


def test_trial_overrides_change_only_the_selected_arms():
    study = dataclasses.replace(
        TOY, trial_overrides=(("init=scratch", {"solver.gamma": 0.02, "data.min_size": [112, 128, 144]}),)
    )
    settings = {a.init: base_trial(study, a, results_uri="", code_version="", pretrained={}) for a in arms(study)}
    assert settings["scratch"]["solver"]["gamma"] == 0.02 and settings["scratch"]["data"]["min_size"] == (112, 128, 144)
    assert settings["pretrained"]["solver"] == dataclasses.asdict(TOY.solver)
    cfg = from_dict(TrialConfig, {**settings["scratch"], "trial_id": "t"})  # what a worker rebuilds
    assert cfg.solver.gamma == 0.02 and cfg.data.min_size == (112, 128, 144)
    # Lengths in iterations stay study-wide (they scale with the global batch), and typos are named.
    for key in ("solver.base_iters", "solver.gama", "model.width"):
        with pytest.raises(ConfigError, match="trial_overrides"):
            dataclasses.replace(TOY, trial_overrides=(("init=scratch", {key: 1}),))
    with pytest.raises(ConfigError, match="data.max_size"):  # a bad value: DataConfig's own check
        base_trial(
            dataclasses.replace(TOY, trial_overrides=(("init=scratch", {"data.max_size": 10}),)),
            Arm("scratch", 1.0, "tiny"),
            results_uri="",
            code_version="",
            pretrained={},
        )


def test_the_35k_subset_runs_the_papers_own_recipe():
    """Sec. 5.2 footnote: scale augmentation [512, 800], start LR 0.04, LR decay factor 0.02,
    for both inits at 35k images; the other subsets keep the defaults."""
    study = PRESETS["coco-r50-gn-subsets"]
    for arm in arms(study):
        t = base_trial(study, arm, results_uri="", code_version="", pretrained={"r50": ("w.pkl", 1)})
        if round(arm.data_fraction * 118_287) == 35_000:
            assert t["lr"] == 0.04 and t["solver"]["gamma"] == 0.02
            assert t["data"]["min_size"] == tuple(range(512, 801, 32)) and t["data"]["test_min_size"] == 800
        else:
            assert t["lr"] == 0.02 and t["solver"]["gamma"] == 0.1 and t["data"]["min_size"] == (800,)


def test_every_comparison_states_its_margin_before_the_run(tmp_path):
    """Each preset gives every (model, data fraction) a non-inferiority margin with a reason;
    the subsets' and the keypoint preset's are their own, the same share of the paper's
    pretrained AP for the setting; study.json records them before the first trial."""
    from analysis.paper import DATA_FRACTION_BBOX_AP
    from study.spec.resolved import margin_for, margins
    from study.spec.study_config import Margin
    from study.workspace import write_study_file

    for name, preset in PRESETS.items():
        for m in margins(preset):
            assert 0 < m["ap"] < 1 and m["reason"].strip(), (name, m)
    subsets = PRESETS["coco-r50-gn-subsets"]
    share = 0.005 / 0.411  # half a point at R50 pretrained's 41.1 (Table 1)
    for images, (pretrained, _) in DATA_FRACTION_BBOX_AP.items():
        margin = margin_for(subsets, "r50", images / 118_287)
        assert margin.ap == pytest.approx(share * pretrained / 100, rel=1e-3) and f"{images:,}-image" in margin.reason
    assert margin_for(subsets, "r50", 1000 / 118_287).ap < margin_for(subsets, "r50", 35_000 / 118_287).ap / 3
    assert margin_for(PRESETS["coco-r50-gn"], "r50", 1.0).ap == 0.005
    assert margin_for(PRESETS["coco-r50-gn-keypoints"], "r50", 1.0).ap == pytest.approx(share * 0.655, rel=1e-3)
    assert margin_for(PRESETS["toy-paper"], "tiny", 0.02).ap < margin_for(PRESETS["toy-paper"], "tiny", 1.0).ap / 3
    assert margin_for(PRESETS["toy-keypoints"], "tiny", 1.0) != margin_for(PRESETS["toy"], "tiny", 1.0)
    # Both inits share a comparison's margin: a selector on init is refused.
    with pytest.raises(ConfigError, match="margin_overrides"):
        dataclasses.replace(TOY, margin_overrides=(("init=scratch", Margin(0.01, "x")),))
    with pytest.raises(ConfigError, match="margin.reason"):
        Margin(0.01, " ")
    write_study_file(str(tmp_path), resolve(subsets), {}, {})
    recorded = json.loads((tmp_path / "study.json").read_text())["margins"]
    assert [m["ap"] for m in recorded] == [m["ap"] for m in margins(subsets)] and len(recorded) == 4
