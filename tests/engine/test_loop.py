"""The loop's pieces without Ray or a detector: timeline, fork/restore, hooks, divergence guard."""

import pytest
import torch

from trainables.engine.branches import branches, independent_iterations, trial_iterations
from trainables.engine.hooks import FaultInjection, HookBase, PeriodicEvaluation
from trainables.engine.loop import ForkStore, Trainer, TrainState
from trainables.engine.losses import Diverged, LossWindow, check_finite
from trainables.engine.schedule import lr_at


def test_branches_fork_at_each_schedules_first_drop():
    plan = branches(500, (1.0, 2.0, 3.0), 3.0)
    assert [(b.schedule, b.fork, b.end) for b in plan] == [(1.0, 167, 500), (2.0, 667, 1000), (3.0, 1167, 1500)]
    assert trial_iterations(plan) == 1167 + 3 * 333 and independent_iterations(plan) == 3000
    # The paper's Table 1 at B = 90k: 480k of trunk and five 60k cooldowns.
    coco = branches(90_000, (2.0, 3.0, 4.0, 5.0, 6.0), 6.0)
    assert trial_iterations(coco) == 780_000 and independent_iterations(coco) == 1_800_000
    # Only schedules up to the trunk's, and the trunk's own even outside the set.
    assert [b.schedule for b in branches(500, (1.0, 2.0, 3.0), 2.0)] == [1.0, 2.0]
    assert [b.schedule for b in branches(500, (1.0, 3.0), 2.5)] == [1.0, 2.5]
    # Below 1x a schedule forks at a third of its length, keeping 1x's proportions.
    assert branches(90_000, (1 / 6, 1 / 3), 1 / 3)[0].fork == 5_000


@pytest.mark.parametrize("schedules", [(1.0, 2.0, 3.0), (2.0, 3.0, 4.0, 5.0, 6.0), (1 / 6, 1 / 3, 2 / 3)])
def test_the_trunk_follows_every_schedules_lr_until_its_fork(schedules):
    base = 900
    plan = branches(base, schedules, max(schedules))
    kw = dict(peak_lr=1.0, base_iters=base, warmup_iters=50, warmup_factor=1 / 3)
    for b in plan:
        assert all(
            lr_at(i, schedule=b.schedule, **kw) == lr_at(i, schedule=plan[-1].schedule, **kw) for i in range(b.fork)
        )
        assert lr_at(b.fork, schedule=b.schedule, **kw) == pytest.approx(0.1)  # the first drop


def test_colliding_forks_are_refused():
    with pytest.raises(ValueError, match="fork at the same iteration"):
        branches(9, (1.0, 1.01), 1.01)


def _training(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    return TrainState(net, opt, torch.amp.GradScaler("cuda", enabled=False), LossWindow(1))


def _toy_trainer(plan, period=0, hooks=(), fail=None):
    """A linear model on a fixed data stream; records what the loop asks of its pieces."""
    training = _training()
    data = torch.randn(1000, 3)
    calls = []

    class ToyLR(HookBase):
        """The toy's schedule: 0.1, a tenth of it in a branch's cooldown."""

        def before_step(self, trainer):
            t = trainer
            lr = 0.1 * (1.0 if t.position.iteration < t.branch.fork or not t.position.in_branch else 0.1)
            for g in training.optimizer.param_groups:
                g["lr"] = lr

    def step(batch):
        lr = training.optimizer.param_groups[0]["lr"]
        # A draw from the global RNG each step: restored with the fork.
        loss = (training.model(batch).pow(2).mean() + torch.rand(()) * 0).squeeze()
        training.optimizer.zero_grad()
        loss.backward()
        training.optimizer.step()
        return [loss.item()], lr

    def batches(start):
        return iter(data[i : i + 1] for i in range(start, 1000))

    def evaluate(final):
        return {"w": training.model.weight.sum().item(), "final": final}

    class Recorder:
        """The row sink's interface, recording (kind, iteration, weight, ended, final)."""

        def trunk(self, trainer, metrics):
            calls.append(("trunk", trainer.position.iteration, metrics["w"], None, metrics["final"]))
            return {"kind": "trunk"}

        def final(self, trainer, ended, window, metrics):
            calls.append(("final", trainer.position.iteration, metrics["w"], ended, metrics["final"]))
            return {"kind": "final"}

        def checkpoint(self, trainer):
            calls.append(("checkpoint", trainer.position.iteration, None, None, None))
            return {"kind": "checkpoint"}

        def diverged(self, trainer, losses, lr):
            calls.append(("diverged", trainer.position.iteration, None, None, None))
            return {"kind": "diverged"}

    hooks = [ToyLR(), PeriodicEvaluation(period), *hooks]
    return Trainer(plan, training, step, batches, evaluate, Recorder(), hooks=hooks), calls


def test_a_branch_ends_where_an_independent_run_would():
    plan = branches(9, (1.0, 2.0, 3.0), 3.0)
    trainer, calls = _toy_trainer(plan)
    trainer.run()
    finals = [(c[1], c[2]) for c in calls if c[0] == "final"]
    assert [c[3].iteration for c in calls if c[0] == "final"] == [9, 18, 27]
    for b, (_, weight) in zip(plan, finals):
        alone, alone_calls = _toy_trainer(branches(9, (), b.schedule))
        alone.run()
        assert [c[2] for c in alone_calls if c[0] == "final"] == [weight], b.schedule
    # After each branch the trunk is back at its fork, and the last one finishes the trial.
    assert [c[1] for c in calls if c[0] == "final"] == [3, 12, 27] and trainer.position.finished
    assert trainer.position.cost == trial_iterations(plan)


def test_periodic_hook_evaluates_the_trunk_and_checkpoints_cooldowns():
    trainer, calls = _toy_trainer(branches(9, (1.0, 2.0), 2.0), period=4)
    trainer.run()
    # Trunk 0 -> 3, 1x cooldown 3 -> 9 (checkpoint at 4, 8), trunk 3 -> 12 (rows at 4, 8, 12), 2x 12 -> 18 (16).
    assert [(k, i) for k, i, *_ in calls] == [
        ("checkpoint", 4),
        ("checkpoint", 8),
        ("final", 3),
        ("trunk", 4),
        ("trunk", 8),
        ("trunk", 12),
        ("checkpoint", 16),
        ("final", 18),
    ]
    # Only a schedule's final result is evaluated as final (where the test split is scored).
    assert {(c[0], c[4]) for c in calls if c[0] != "checkpoint"} == {
        ("final", True),
        ("trunk", False),
    }


def test_fork_store_restores_weights_momentum_window_and_rng():
    training = _training()
    store = ForkStore()
    training.window.add([1.0], 0.1)
    torch.manual_seed(5)
    store.save(training)
    expected_draw = torch.rand(3)
    weights = {k: v.clone() for k, v in training.model.state_dict().items()}
    training.model(torch.ones(1, 3)).sum().backward()
    training.optimizer.step()
    training.window.add([9.0], 0.01)
    store.restore(training)
    assert all(torch.equal(weights[k], v) for k, v in training.model.state_dict().items())
    assert training.optimizer.state_dict()["state"] == {}  # no momentum yet at the fork
    assert training.window.mean() == [1.0] and training.window.lr == 0.1
    assert torch.equal(torch.rand(3), expected_draw)
    with pytest.raises(RuntimeError, match="no saved trunk"):
        store.restore(training)


def test_divergence_guard():
    check_finite(torch.tensor([1.0, 2.0]), 0.1)
    with pytest.raises(Diverged) as err:
        check_finite(torch.tensor([float("nan"), 1.0]), 0.5)
    assert err.value.lr == 0.5 and err.value.losses[1] == 1.0


def test_a_diverged_step_is_reported_once_and_ends_the_run():
    plan = branches(9, (), 1.0)
    trainer, calls = _toy_trainer(plan)
    original = trainer._step

    def bad_step(batch):
        if trainer.position.iteration == 5:
            raise Diverged([float("inf")], 0.1)
        return original(batch)

    trainer._step = bad_step
    trainer.run()
    assert [(k, i) for k, i, *_ in calls] == [("diverged", 6)]


def test_fault_injection_fires_once_on_the_last_rank():
    fired = set()

    def once(i):
        seen = i in fired
        fired.add(i)
        return seen

    plan = branches(9, (1.0, 2.0), 2.0)
    hook = FaultInjection(5, rank=1, world=2, once=once, error=RuntimeError)
    trainer, _ = _toy_trainer(plan, hooks=[hook])
    with pytest.raises(RuntimeError, match="iteration 5"):
        trainer.run()
    trainer2, _ = _toy_trainer(plan, hooks=[hook])
    trainer2.run()  # iteration 5 again (and again on the trunk): no second failure
    other_rank, _ = _toy_trainer(
        plan, hooks=[FaultInjection(5, rank=0, world=2, once=lambda i: False, error=RuntimeError)]
    )
    other_rank.run()


def test_the_trainer_owns_its_timeline_state():
    """state_dict/load_state_dict carry the position and the saved fork: a trainer restored
    in a cooldown goes on to the same results as one that never stopped."""
    plan = branches(9, (1.0, 2.0), 2.0)
    straight, straight_calls = _toy_trainer(plan)
    straight.run()
    first, _ = _toy_trainer(plan)
    stop_at = 5  # inside the 1x cooldown (3 -> 9): a fork is saved

    def halt(batch, original=first._step):
        if first.position.iteration == stop_at:
            raise KeyboardInterrupt
        return original(batch)

    first._step = halt
    with pytest.raises(KeyboardInterrupt):
        first.run()
    saved = first.state_dict()
    assert saved["position"]["in_branch"] and saved["fork"] is not None
    resumed, resumed_calls = _toy_trainer(plan)
    resumed.state.load_state_dict(first.state.snapshot())
    resumed.load_state_dict(saved)
    resumed.run()
    assert [c[:3] for c in resumed_calls] == [c[:3] for c in straight_calls if c[0] == "final"]


def test_a_late_divergence_ends_at_the_iteration_already_counted():
    """A step that reads its losses back late (SGDStep) finds a non-finite one in ``settle``,
    after the loop counted that step: the row says the iteration reached."""
    plan = branches(9, (), 1.0)
    trainer, calls = _toy_trainer(plan, period=4)

    def settle():
        if trainer.position.iteration == 4:
            raise Diverged([float("inf")], 0.1, counted=True)

    trainer._settle = settle
    trainer.run()
    assert [(k, i) for k, i, *_ in calls] == [("diverged", 4)] and trainer.position.cost == 4


def test_the_trainer_settles_the_step_before_it_reads_or_saves_the_model():
    """Every evaluation, checkpoint and fork comes after the last step's checks."""
    plan = branches(9, (1.0, 2.0), 2.0)
    trainer, calls = _toy_trainer(plan, period=4)
    pending, unsettled = [], []
    step, evaluate, save = trainer._step, trainer._evaluate, trainer.forks.save

    def step_leaving_checks(batch):
        pending.append(trainer.position.iteration)
        return step(batch)

    def settle():
        pending.clear()

    def checked(name, fn, t=trainer):
        def call(*args):
            if pending:
                unsettled.append((name, t.position.iteration))
            return fn(*args)

        return call

    trainer._step, trainer._settle = step_leaving_checks, settle
    trainer._evaluate, trainer.forks.save = checked("evaluate", evaluate), checked("fork", save)
    trainer.writer.checkpoint = checked("checkpoint", trainer.writer.checkpoint)
    trainer.run()
    assert unsettled == []
    assert {k for k, *_ in calls} == {"checkpoint", "trunk", "final"}
    # Without the Trainer's settle the same run would have read unsettled steps.
    trainer2, _ = _toy_trainer(plan, period=4)
    pending.clear()
    step2, evaluate2 = trainer2._step, trainer2._evaluate

    def step2_leaving_checks(batch):
        pending.append(1)
        return step2(batch)

    trainer2._step, trainer2._evaluate = step2_leaving_checks, checked("evaluate", evaluate2, trainer2)
    trainer2.run()
    assert ("evaluate", 4) in unsettled and ("evaluate", 9) in unsettled
