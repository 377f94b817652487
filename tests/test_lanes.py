"""Forked lanes (``synpo.training.lanes``): a function run in a child of one thread gives back its value or its exception,
a lane that dies says so, and a SimPO job trained in a lane is the job trained in this process."""

import os
import signal

import pytest

from synpo.errors import UserError
from synpo.stages import covered_seconds
from synpo.training import lanes


def _where():
    import torch

    return os.getpid(), torch.get_num_threads()


def test_a_lane_is_another_process_of_one_thread_and_returns_its_value():
    pid, threads = lanes.run_forked(_where)
    assert pid != os.getpid() and threads == 1


def test_a_lanes_exception_is_raised_here_with_the_lanes_traceback():
    def bad(key):
        raise UserError(f"{key}: not a valid value")

    with pytest.raises(UserError, match="trainer.beta: not a valid value") as info:
        lanes.run_forked(bad, "trainer.beta")
    assert any("raised in a forked lane" in n and "in bad" in n for n in info.value.__notes__)


def test_an_outcome_that_does_not_pickle_becomes_a_clear_error():
    with pytest.raises(RuntimeError, match="could not send back its outcome"):
        lanes.run_forked(lambda: lambda: 0)


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_a_lane_that_dies_without_a_result_says_so(how):
    def die():
        if how == "exit":
            os._exit(7)
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(RuntimeError, match="died in its forked process") as info:
        lanes.run_forked(die)
    assert ("exit code 7" in str(info.value)) if how == "exit" else ("out of memory" in str(info.value))


def test_a_lane_dies_with_a_killed_parent(tmp_path):
    """kill -9 of run.py takes its lanes with it, so none goes on writing a job that the rerun resumes."""
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "lane.pid"
    script = (
        "import os, sys, time\n"
        "from synpo.training import lanes\n"
        "def work(path):\n"
        "    open(path, 'w').write(str(os.getpid()))\n"
        "    time.sleep(120)\n"
        f"lanes.run_forked(work, {str(pid_file)!r})\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    lane = int(pid_file.read_text())
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(lane, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(lane, signal.SIGKILL)
    pytest.fail(f"lane {lane} outlived its killed parent")


def test_a_lane_under_a_wandb_run_may_be_the_first_to_need_trl(tmp_path):
    """W&B's telemetry hooks fire on the first import of TRL and raise in a forked child; a resumed run whose first
    TRL job was a lane's died so. The training stack is imported before the fork."""
    import subprocess
    import sys

    script = (
        "import sys, wandb\n"
        f"run = wandb.init(mode='offline', dir={str(tmp_path)!r}, settings=wandb.Settings(console='off', silent=True))\n"
        "assert 'trl' not in sys.modules\n"
        "from synpo.training import lanes\n"
        "def job():\n"
        "    import trl\n"
        "    return trl.__name__\n"
        "print('LANE', lanes.run_forked(job))\n"
        "run.finish()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "LANE trl" in proc.stdout, proc.stderr[-3000:]


def test_lanes_are_capped_by_the_request_the_jobs_and_the_cpus():
    cpus = len(os.sched_getaffinity(0))
    assert lanes.available(1, 6) == 1
    assert lanes.available(2, 1) == 1
    assert lanes.available(2, 6, launcher="accelerate") == 1
    assert lanes.available(64, 6) == min(6, cpus)


def test_covered_seconds_counts_time_that_stages_shared_once():
    assert covered_seconds([]) == 0.0
    assert covered_seconds([(0.0, 2.0), (2.0, 3.0)]) == 3.0  # one after the other: the sum
    assert covered_seconds([(0.0, 4.0), (1.0, 3.0)]) == 4.0  # nested
    assert covered_seconds([(0.0, 3.0), (2.0, 5.0), (7.0, 8.0)]) == 6.0  # overlapping, then apart


def test_a_simpo_job_in_a_lane_is_the_job_trained_here(tmp_path):
    from omegaconf import OmegaConf

    from synpo.modeling import load_causal_lm
    from synpo.training.common import HParams
    from synpo.training.config import LaunchConfig
    from synpo.training.launch import Slot, run_training_job

    pairs = [
        {"prompt": f"Add the numbers {a} and {a + 1}.", "chosen": f"The sum is {2 * a + 1}.", "rejected": str(a)}
        for a in range(24)
    ]
    hp = HParams(batch_size=4, max_steps=6, learning_rate=1e-3, warmup_ratio=0.0, max_length=64, seed=3)
    launch = OmegaConf.structured(LaunchConfig())
    job = dict(model_path="builtin:tiny-sft", pairs=pairs, hp=hp, beta=2.0, gamma=1.6)
    here = run_training_job("simpo", tmp_path / "here", launch, **job)
    forked = run_training_job("simpo", tmp_path / "lane", launch, slot=Slot(forked=True), **job)
    assert forked["steps"] == here["steps"] == 6
    assert forked["train_loss"] == pytest.approx(here["train_loss"], rel=1e-4)
    assert forked["compute"] == here["compute"]
    from helpers import update_difference

    a, b = load_causal_lm(str(tmp_path / "here")), load_causal_lm(str(tmp_path / "lane"))
    diff, moved = update_difference(a, b, load_causal_lm("builtin:tiny-sft"))  # kernels differ: rounding, not bits
    assert moved > 0 and diff <= 1e-3 * moved, (diff, moved)
