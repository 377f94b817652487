"""Children that must not outlive their stage: the vLLM worker's process group, its stall watchdog, and the check
that the GPUs are free before an engine starts."""

import os
import subprocess
import sys
import time

from synpo.children import kill_group
from synpo.generation.vllm import Watchdog, root_cause
from synpo.generation.vllm_worker import memory_problem


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _group_with_a_grandchild():
    code = (
        "import subprocess, sys, time; p = subprocess.Popen(['sleep', '60']); print(p.pid, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    return proc, int(proc.stdout.readline())


def test_kill_group_takes_the_worker_and_its_engine_processes():
    proc, grandchild = _group_with_a_grandchild()
    kill_group(proc.pid)
    proc.wait(timeout=10)
    deadline = time.time() + 10
    while _alive(grandchild) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    kill_group(proc.pid)  # an ended group: nothing happens


def test_a_worker_without_progress_is_killed_and_reported_as_stalled():
    proc, _ = _group_with_a_grandchild()
    watch = Watchdog(proc.pid, timeout_s=0.5)
    assert proc.wait(timeout=20) != 0
    assert watch.stalled
    busy, _ = _group_with_a_grandchild()
    lively = Watchdog(busy.pid, timeout_s=2.0)
    for _ in range(6):  # progress every 0.5 s keeps it alive past the timeout
        lively.progress()
        time.sleep(0.5)
    lively.stop()
    assert busy.poll() is None and not lively.stalled
    kill_group(busy.pid)
    busy.wait(timeout=10)


def test_the_root_cause_is_this_attempts(tmp_path):
    (tmp_path / "worker-01.log").write_text("RuntimeError: CUDA out of memory\n")
    (tmp_path / "worker-02.log").write_text("ValueError: max_model_len 4096 exceeds the model's 2048\n")
    assert root_cause(tmp_path / "worker-02.log").startswith("ValueError: max_model_len")


GPUS = [["0", "GPU-a", "15360", "81559"], ["1", "GPU-b", "0", "81559"]]
APPS = [["GPU-a", "4242", "python run.py", "15360"]]


def test_an_engine_that_would_not_fit_names_what_holds_the_gpu():
    problem = memory_problem(0.9, GPUS, APPS, None)
    assert "GPU 0 has 64.6 GiB free of 79.6 GiB" in problem and "pid 4242 (python run.py, 15360 MiB)" in problem
    assert "GPU 1" not in problem and "gpu_memory_utilization" in problem
    assert memory_problem(0.9, GPUS, APPS, "1") is None  # the worker sees GPU 1 only: it fits
    assert memory_problem(0.75, GPUS, APPS, None) is None
