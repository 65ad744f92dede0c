"""A study resolved once: for each arm, one frozen spec of everything that arm runs with.

The preset says things study-wide and per arm by selectors (``search_overrides``,
``default_overrides``, ``trial_overrides``, ``margin_overrides``); :func:`resolve` applies
them once, checks that every arm's schedules give a trial plan, and hands the result on. The
search, early stopping, the dry-run plan, preflight, the replicate phase and the trial's
driver take a :class:`ResolvedStudy` instead of deriving an arm's settings again; study.json
records it (:func:`record`). Pure: no Ray, torch or file access.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from study.spec.margins import Margin
from study.spec.study_config import Arm, SearchSpace, StudyConfig, arms, selector_matches
from trainables.contract.config_io import coerce
from trainables.contract.rows import RECIPE_KEYS
from trainables.contract.study_record import StudyRecord
from trainables.contract.trial_config import ConfigError, DataConfig, SolverConfig, TrialConfig
from trainables.engine.branches import Branch, branches


@dataclass(frozen=True)
class ArmSpec:
    """One arm as it runs: its recipe (the paper's lr, weight decay and schedule, the arm's
    first trial), its searched ranges, its solver and data settings, its comparison's margin,
    and the recipe's trunk and branches."""

    arm: Arm
    recipe: dict[str, float]
    space: SearchSpace
    solver: SolverConfig
    data: DataConfig
    margin: Margin
    recipe_branches: tuple[Branch, ...]

    @property
    def name(self) -> str:
        return self.arm.name

    @property
    def schedules(self) -> tuple[float, ...]:
        return self.space.schedule

    def branches_of(self, trunk_schedule: float) -> tuple[Branch, ...]:
        """The trunk and branches of a trial of this arm whose longest schedule is ``trunk_schedule``."""
        return branches(self.solver.base_iters, self.space.schedule, trunk_schedule)


@dataclass(frozen=True)
class ResolvedStudy:
    """The study (at its global batch) and each of its arms' spec, in the arms' order."""

    study: StudyConfig
    arms: tuple[ArmSpec, ...]

    def arm(self, name: str) -> ArmSpec:
        for spec in self.arms:
            if spec.name == name:
                return spec
        raise KeyError(f"no arm {name} in study {self.study.name} ({', '.join(a.name for a in self.arms)})")

    def trial_configs(
        self, *, results_uri: str, code_version: str, pretrained: dict[str, tuple[str, int | None]]
    ) -> dict[str, dict[str, Any]]:
        """Each arm's fixed part of a TrialConfig, as a dict (a trial's searched values replace
        lr, weight decay, schedule and seed).

        ``pretrained``: the given weights per model (study/workspace.py's prepare_inputs); a
        pretrained arm whose model has none gets the study's generated pretraining instead.
        """
        return {
            spec.name: dataclasses.asdict(
                _trial_config(self.study, spec, results_uri, code_version, pretrained.get(spec.arm.model))
            )
            for spec in self.arms
        }


def resolve(study: StudyConfig) -> ResolvedStudy:
    """Every arm's spec, validated: a schedule set whose forks collide is a ConfigError
    naming ``search.schedule``."""
    return ResolvedStudy(study, tuple(arm_spec(study, arm) for arm in arms(study)))


def arm_spec(study: StudyConfig, arm: Arm) -> ArmSpec:
    """The arm's spec: the preset's settings with every matching per-arm override applied in
    order (later entries win)."""
    values = dataclasses.asdict(arm)
    recipe = {k: study.default_trial[k] for k in RECIPE_KEYS}
    space, margin = study.search, study.margin
    parts: dict[str, Any] = {"solver": study.solver, "data": study.data}
    for selector, override in study.default_overrides:
        if selector_matches(selector, values):
            recipe.update(override)
    for selector, override in study.search_overrides:
        if selector_matches(selector, values):
            space = override
    for selector, changes in study.trial_overrides:
        if selector_matches(selector, values):
            for key, value in changes.items():
                part, _, name = key.partition(".")
                tp = typing.get_type_hints(type(parts[part]))[name]
                parts[part] = dataclasses.replace(parts[part], **{name: coerce(tp, value, key)})
    for selector, override in study.margin_overrides:
        if selector_matches(selector, {"model": arm.model, "data_fraction": arm.data_fraction}):
            margin = override
    recipe = {k: float(v) for k, v in recipe.items()}
    try:
        plan = branches(parts["solver"].base_iters, space.schedule, recipe["schedule"])
        for s in space.schedule:
            branches(parts["solver"].base_iters, space.schedule, s)
    except ValueError as err:
        raise ConfigError(f"arm {arm.name}: {err}", "search.schedule") from None
    return ArmSpec(arm, recipe, space, parts["solver"], parts["data"], margin, plan)


def base_trial(
    study: StudyConfig, arm: Arm, *, results_uri: str, code_version: str, pretrained: dict[str, tuple[str, int | None]]
) -> dict[str, Any]:
    """One arm's fixed trial config, as :meth:`ResolvedStudy.trial_configs` gives it (for a
    caller that runs one arm: a benchmark, a test)."""
    spec = arm_spec(study, arm)
    return dataclasses.asdict(_trial_config(study, spec, results_uri, code_version, pretrained.get(arm.model)))


def margin_for(study: StudyConfig, model: str, data_fraction: float) -> Margin:
    """The margin of the comparison at (model, data fraction); both inits share it."""
    return arm_spec(study, Arm(study.axes.init[0], data_fraction, model)).margin


def margins(study: StudyConfig) -> list[dict[str, Any]]:
    """Every comparison's margin, as study.json records it."""
    return [
        {"model": m, "data_fraction": f, **dataclasses.asdict(margin_for(study, m, f))}
        for m in study.axes.model
        for f in study.axes.data_fraction
    ]


def record(resolved: ResolvedStudy, trial_configs: dict[str, dict[str, Any]], **started: Any) -> StudyRecord:
    """study.json's content for a study about to start: ``started`` says how (mode, trial,
    num_samples, replicates, overrides, code_version, python, packages, pretraining_classes)."""
    study = resolved.study
    return StudyRecord(
        preset=dataclasses.asdict(study),
        arms=trial_configs,
        search_spaces={spec.name: dataclasses.asdict(spec.space) for spec in resolved.arms},
        margins=margins(study),
        **started,
    )


def _trial_config(
    study: StudyConfig, spec: ArmSpec, results_uri: str, code_version: str, given: tuple[str, int | None] | None
) -> TrialConfig:
    arm = spec.arm
    weights, images_seen, pretrain = "", None, None
    if arm.init == "pretrained" and given is not None:
        weights, images_seen = given
    elif arm.init == "pretrained" and study.pretrain is not None:
        pretrain, images_seen = study.pretrain, study.pretrain.images_seen
    return TrialConfig(
        study=study.name,
        arm=arm.name,
        init=arm.init,
        data_fraction=arm.data_fraction,
        model_name=arm.model,
        **spec.recipe,
        seed=study.seed,
        model=study.models[arm.model],
        data=spec.data,
        solver=spec.solver,
        schedules=spec.space.schedule,
        num_workers=study.num_workers,
        use_gpu=study.use_gpu,
        cpus_per_worker=study.cpus_per_worker,
        max_failures=study.max_failures,
        eval_period=study.eval_period,
        progress_seconds=study.progress_seconds,
        pretrained_weights=weights,
        pretrain=pretrain,
        pretrain_images_seen=images_seen,
        results_uri=results_uri,
        code_version=code_version,
    )
