"""The trial's optimizer step (the Trainer's ``step``, trainables/engine/loop.py): forward, backward,
the losses averaged over the ranks, clipping and the update, with the losses' checks read back
one step late so that nothing in the step waits for the device."""

from __future__ import annotations

import torch

from trainables.contract.errors import InputError
from trainables.contract.rows import loss_keys
from trainables.contract.trial_config import TrialConfig
from trainables.engine.loop import SkippedImages, TrainState
from trainables.engine.losses import check_finite
from trainables.runtime import AgreedInputError, HostCopy, MeanAcrossRanks, Session, describe_input_error, gather


class SGDStep:
    """One optimizer update on a batch (the Trainer's ``step``), at the LR the optimizer
    holds (set before it by the LRSchedule hook, trainables/engine/hooks.py): forward, backward,
    the losses averaged over the ranks, clipping and the update; returns the reduced losses
    (a tensor on the device) and the LR used.

    Nothing in it waits for the device: the reduced losses and the bad-input flag come back
    to the host while the next step's forward and backward run, and :meth:`settle` checks
    them there, before that step's update (or before the Trainer evaluates, saves a fork or
    checkpoints). So the divergence guard and the bad-input agreement act one step late:
    the step that met a non-finite loss or an unreadable batch has already been applied
    (GradScaler skips a non-finite update under AMP), and the trial ends at the next one
    with the first step's losses, at the iteration already counted. A trial that stops
    there is over either way.
    """

    def __init__(
        self,
        cfg: TrialConfig,
        session: Session,
        model: torch.nn.Module,
        state: TrainState,
        skips: SkippedImages,
        use_amp: bool,
    ) -> None:
        self.solver, self.session, self.model, self.state = cfg.solver, session, model, state
        self.skips, self.use_amp = skips, use_amp
        self.loss_keys = loss_keys(cfg.data.keypoints)
        # The last step's reduced losses and flag on their way to the host, its unreadable
        # images and its LR: what settle() checks.
        self.pending: tuple[HostCopy, list[str], float] | None = None

    def __call__(self, batch) -> tuple[torch.Tensor, float]:
        s, optimizer, world = self.solver, self.state.optimizer, self.session.world_size
        images, targets = batch
        self.skips.note(targets)
        unreadable = [t.pop("unreadable") for t in targets if "unreadable" in t]
        lr_now = optimizer.param_groups[0]["lr"]
        self.model.train()
        with torch.autocast(self.session.device.type, enabled=self.use_amp):
            loss_dict = self.model(images, targets)
        loss = sum(loss_dict.values())
        # The losses are averaged over the ranks while backward runs: waiting for them
        # before backward would add a second synchronisation point per step, at which
        # the rank with the cheaper image idles.
        # The last element flags a batch without a readable image on some rank; it rides on
        # the losses' all-reduce, so every rank learns it at the same point.
        flag = loss.detach().new_tensor(float(bool(unreadable)))
        pending = MeanAcrossRanks(
            torch.stack([loss.detach(), *[loss_dict[k].detach() for k in self.loss_keys], flag]), world
        )
        optimizer.zero_grad(set_to_none=True)
        self.state.scaler.scale(loss).backward()
        reduced = pending.wait()
        self.settle()  # the previous step's checks, now that this step's work is queued
        self.pending = (HostCopy(reduced), unreadable, lr_now)
        if s.clip_grad_norm:
            self.state.scaler.unscale_(optimizer)
            # foreach: the norms and the scaling as one call each instead of a Python loop
            # over 100+ tensors (the same values; CUDA takes this path by default).
            torch.nn.utils.clip_grad_norm_(self.state.model.parameters(), s.clip_grad_norm, foreach=True)
        self.state.scaler.step(optimizer)
        self.state.scaler.update()
        return reduced[:-1], lr_now

    def settle(self) -> None:
        """Checks the last step's losses and flag (every rank at the same point: the agreement
        on bad input gathers); raises :class:`AgreedInputError` or ``Diverged``."""
        if self.pending is None:
            return
        copy, unreadable, lr = self.pending
        self.pending = None
        reduced = copy.get()
        if reduced[-1] > 0:
            world, rank = self.session.world_size, self.session.rank
            mine = describe_input_error(InputError(unreadable[0], "data.train_images"), rank) if unreadable else None
            raise AgreedInputError([e for e in gather(mine, world) if e is not None])
        check_finite(reduced[:-1], lr, counted=True)
