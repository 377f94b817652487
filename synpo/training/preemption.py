"""Prompt preemption: SIGTERM or SIGUSR2 during training checkpoints at the next step boundary, then stops.

SLURM signals a job before it preempts it or its time runs out (submitit asks for SIGUSR2 ``signal_delay_s``
before the end; a preemption sends SIGTERM). Without this, a signal that arrives mid-training either kills the job
at once (everything since the last ``save_steps`` checkpoint is lost) or, under submitit, requeues it at once.

``install()`` (main thread, once per process: ``run.py`` and each ``accelerate`` rank) replaces the handlers of
both signals. While a training job runs (``training()``), a signal only sets a flag; the job's ``StopAtSignal``
callback then saves a checkpoint at the end of the current optimizer step and stops the trainer, and
``finish_training`` raises ``Preempted`` instead of saving a final model. ``Preempted.exit()`` hands the signal to
the handler that was installed before ours (submitit's: it requeues the job) or exits with 128 + the signal's
number. The requeued or rerun job finds the checkpoint in the job's ``.partial`` directory and resumes from that
step. A signal outside training goes straight to the previous handler: every other stage resumes from its shards.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGUSR2)
_previous: dict[int, object] = {}
_state = {"active": 0, "signum": None}
_lock = threading.Lock()


class Preempted(Exception):
    """A training job stopped at a step boundary on a signal, its checkpoint saved in ``checkpoint``."""

    def __init__(self, signum: int, checkpoint: str):
        super().__init__(f"training stopped on {signal.Signals(signum).name} after saving {checkpoint}")
        self.signum, self.checkpoint = signum, checkpoint

    def __reduce__(self):  # raised again in run.py when a forked lane (``synpo.training.lanes``) was preempted
        return Preempted, (self.signum, self.checkpoint)

    def exit(self) -> None:
        """What the process does now: the previous handler of the signal (submitit requeues), or exit 128 + n."""
        log.warning("%s; run the same command again to resume from it", self)
        forward(self.signum)
        raise SystemExit(128 + self.signum)


def forward(signum: int) -> None:
    """Run the handler that was installed before ours for ``signum`` (if it returns, so do we)."""
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, None)
    elif previous == signal.SIG_DFL:
        raise SystemExit(128 + signum)


def _handler(signum, frame) -> None:
    with _lock:
        training = _state["active"] > 0
        if training:
            _state["signum"] = signum
    if training:
        log.warning("%s: checkpointing at the end of this training step, then stopping", signal.Signals(signum).name)
    else:
        forward(signum)


def install() -> None:
    """Take over SIGTERM and SIGUSR2 in this process (main thread only; a second call does nothing)."""
    if _previous or threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        _previous[sig] = signal.signal(sig, _handler)


def reset_after_fork() -> None:
    """In a forked child (``synpo.training.lanes``): a lock of its own (another thread of the parent may have held the
    parent's at the fork). The handlers and a signal already requested carry over."""
    global _lock
    _lock = threading.Lock()


def requested() -> int | None:
    """The signal that asked running training to stop, if any."""
    return _state["signum"]


@contextmanager
def training():
    """Marks a training job as running in this process (a signal then waits for its next step boundary)."""
    with _lock:
        _state["active"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["active"] -= 1


def _agreed(stop: bool) -> bool:
    """Whether any rank of a distributed job was signalled: every rank must stop at the same step (a rank that went
    on alone would wait forever in the next collective). One tiny all-reduce per step; none in a single process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return stop
    import torch

    flag = torch.tensor([1.0 if stop else 0.0])
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() > 0 and _state["signum"] is None:
        _state["signum"] = signal.SIGTERM  # another rank was signalled: stop here too
    return flag.item() > 0


def stop_at_signal_callback():
    """A TrainerCallback that, once a signal is requested, saves a checkpoint after the current step and stops."""
    from transformers import TrainerCallback

    class StopAtSignal(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if _agreed(requested() is not None):
                control.should_save = True
                control.should_training_stop = True
            return control

    return StopAtSignal()
