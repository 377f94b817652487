"""Forked processes of one thread each, for independent work on a machine without a GPU (``launch.cpu_lanes``).

A width-128 model's ops are too small for two threads to share well: the tiny world's whole job runs only 1.23-1.27x
faster on two cores than on one, while two training jobs in two processes of one thread each finish 20-27% sooner
than the same two one after the other at two threads (``experiments/LOG.md``, 2026-12-02). So an iteration's beta
candidates, which train on the same pairs independently, are given one process each.

A lane is a child forked from run.py: it starts with every library imported (the training stack is imported
before the first fork, as W&B's import hooks must not fire in a child) and shares the parent's memory copy-on-
write (``synpo.memory.settle`` freezes the heap first, so the collector does not touch the shared pages). It runs one
function at one torch thread, sends its result or its exception back through a pipe, and exits. It touches none of
the parent's threads: W&B and the memory sampler are the parent's alone, the tokenizer's thread pool is switched off
before it tokenizes, torch's OpenMP pool is not entered at one thread (the parent's pool does not survive a fork,
which is why a lane never runs more than one thread), and autograd on a CPU keeps no threads. Where CUDA is visible,
no lanes are used: a forked child cannot use CUDA.
"""

from __future__ import annotations

import os
import pickle
import signal
import traceback
from collections.abc import Callable

from synpo.children import die_with
from synpo.training import preemption

LANE = "a forked lane (synpo.training.lanes)"


def available(requested: int, n_jobs: int, launcher: str = "inprocess") -> int:
    """How many of ``n_jobs`` may run at once in lanes: ``requested`` (``launch.cpu_lanes``), at most one per CPU
    this process may use and one per job; 1 (run them here, in turn) under ``accelerate launch`` or where a GPU is
    visible."""
    if requested <= 1 or n_jobs <= 1 or launcher != "inprocess":
        return 1
    import torch

    if torch.cuda.is_available():
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested, cpus, n_jobs))


def run_forked(fn: Callable, /, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a lane: its return value, or its exception raised again here. A preemption signal
    that reaches this process while the lane runs is passed on to it (it checkpoints at its next step boundary and
    raises ``Preempted``, which is raised here)."""
    import multiprocessing as mp

    _import_the_training_stack()
    context = mp.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_lane, args=(send, os.getpid(), fn, args, kwargs), daemon=True)
    with preemption.training():  # a signal now waits for the lane's step boundary instead of ending this process
        child.start()
        send.close()
        outcome = _wait(child, receive)
    child.join()
    if outcome is None:
        raise RuntimeError(
            f"{getattr(fn, '__name__', fn)} died in its forked process (exit code {child.exitcode}"
            f"{': killed, perhaps out of memory' if child.exitcode == -signal.SIGKILL else ''}) without a result. "
            "Re-run the same command to resume; set launch.cpu_lanes=1 to run it in this process instead."
        )
    kind, value = outcome
    if kind == "ok":
        return value
    raise value


def _import_the_training_stack() -> None:
    """Import here, before the fork, what a training job imports: W&B watches the first import of these libraries
    (its telemetry hooks), and a hook that fires in a forked child raises there (W&B refuses a forked process), so a
    lane whose job was the first to import TRL died while loading its model."""
    import accelerate  # noqa: F401
    import datasets  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401


def _wait(child, receive):
    """The lane's ``(kind, value)``, or None if it died without sending one; forwards a preemption signal once."""
    forwarded = False
    while True:
        if receive.poll(0.05) or not child.is_alive():
            try:  # a lane that died between the two checks leaves an end of file, which poll also reports
                return receive.recv() if receive.poll(0) else None
            except EOFError:
                return None
        if preemption.requested() is not None and not forwarded:
            os.kill(child.pid, preemption.requested())
            forwarded = True


def _lane(send, parent: int, fn, args, kwargs) -> None:
    import torch

    die_with(parent)
    torch.set_num_threads(1)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    preemption.reset_after_fork()
    try:
        outcome = ("ok", fn(*args, **kwargs))
    except BaseException as e:  # noqa: BLE001 (everything goes back to the parent, which raises it)
        e.add_note(f"raised in {LANE}:\n" + "".join(traceback.format_exception(e)).rstrip())
        outcome = ("error", e)
    try:
        pickle.loads(pickle.dumps(outcome))  # what the parent will unpickle, tried here where a failure can be told
    except Exception:  # noqa: BLE001 (a value or exception that does not pickle: its text instead)
        text = "".join(traceback.format_exception(outcome[1])) if outcome[0] == "error" else repr(outcome[1])
        outcome = ("error", RuntimeError(f"{LANE} could not send back its outcome: {text}"))
    send.send(outcome)
    send.close()
