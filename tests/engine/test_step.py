"""The trial's optimizer step reads its losses back one step late: the divergence guard and the
bad-input agreement act at the next step (or when the Trainer settles), never by waiting for
the device inside the step that made them."""

import pytest
import torch

from study.spec.presets import SMOKE
from study.spec.resolved import base_trial
from study.spec.study_config import Arm
from tests.conftest import MemoryCheckpoints
from trainables.contract.config_io import from_dict
from trainables.contract.rows import LOSS_KEYS
from trainables.contract.trial_config import TrialConfig
from trainables.engine.loop import SkippedImages, TrainState
from trainables.engine.losses import Diverged, LossWindow
from trainables.engine.step import SGDStep
from trainables.runtime import AgreedInputError


class LinearDetector(torch.nn.Module):
    """A stand-in for the detector's training forward: Mask R-CNN's loss dict from a linear map."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(3, len(LOSS_KEYS))

    def forward(self, images, targets):
        out = self.net(torch.stack(images)).pow(2).mean(0)
        return dict(zip(LOSS_KEYS, out))


def _step(tmp_path):
    cfg = from_dict(
        TrialConfig,
        {
            **base_trial(
                SMOKE, Arm("scratch", 1.0, "tiny"), results_uri=str(tmp_path), code_version="test", pretrained={}
            ),
            "trial_id": "t1",
        },
    )
    torch.manual_seed(0)
    model = LinearDetector()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state = TrainState(model, optimizer, torch.amp.GradScaler("cuda", enabled=False), LossWindow(len(LOSS_KEYS)))
    return SGDStep(cfg, MemoryCheckpoints().session(), model, state, SkippedImages(), use_amp=False), model


def _batch(value=1.0, **target):
    return [torch.full((3,), value), torch.full((3,), value)], [dict(target), {}]


def test_the_step_returns_its_reduced_losses_and_checks_them_at_the_next(tmp_path):
    step, model = _step(tmp_path)
    losses, lr = step(_batch())
    assert isinstance(losses, torch.Tensor) and losses.shape == (1 + len(LOSS_KEYS),) and lr == 0.1
    assert losses[0].item() == pytest.approx(losses[1:].sum().item())
    # A non-finite loss: this step goes through (its update is applied), the next one stops
    # before its own update, with the first step's losses, the step already counted.
    step(_batch(float("nan")))
    assert torch.isnan(model.net.weight).all()
    before = model.net.weight.clone()
    with pytest.raises(Diverged) as err:
        step(_batch())
    assert err.value.counted and err.value.lr == 0.1 and all(v != v for v in err.value.losses)
    assert torch.equal(model.net.weight.isnan(), before.isnan())  # no second update
    step.settle()  # nothing left pending: settled once


def test_an_unreadable_batch_ends_the_trial_when_the_step_settles(tmp_path):
    step, _ = _step(tmp_path)
    step(_batch(unreadable="/data/1.jpg: 11 training images in a row cannot be read"))
    with pytest.raises(AgreedInputError) as err:
        step.settle()  # what the Trainer calls before an evaluation, a fork or a checkpoint
    assert [(e["field"], e["rank"]) for e in err.value.errors] == [("data.train_images", 0)]
    assert "cannot be read" in str(err.value)


def test_the_loss_window_adds_device_losses_and_reads_them_as_python_floats_would():
    """Float64 sums of float32 losses are the numbers the rows had from Python floats."""
    values = torch.rand(50, 3, generator=torch.Generator().manual_seed(1))
    window = LossWindow(3)
    for v in values:
        window.add(v, 0.02)
    sums = [0.0, 0.0, 0.0]
    for v in values.tolist():
        sums = [a + b for a, b in zip(sums, v)]
    assert window.mean() == [s / 50 for s in sums] and window.lr == 0.02
    restored = LossWindow(3)
    restored.load(window.state())
    restored.add(values[0], 0.01)
    assert restored.count == 51 and restored.state()["sums"] == [a + b for a, b in zip(sums, values[0].tolist())]
    restored.reset()
    assert all(m != m for m in restored.mean())  # NaN: nothing since the reset
