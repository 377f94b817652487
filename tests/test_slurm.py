"""Sweeps on a real single-node SLURM cluster (`bash sweeps/slurm_local_cluster.sh start`, which `.ci/run` runs
first): a beta sweep as a job array on the CPU launcher profile, a bad point refused before anything is queued, and
a point that fails at run time reporting its error text in the driver, with and without SLURM accounting.

Marked ``slurm``. The fixture (re)starts the cluster through the same script; it fails, it never skips, when the
cluster cannot be brought up.
"""

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT
from helpers import MICRO

pytestmark = pytest.mark.slurm

CLUSTER = ROOT / "sweeps" / "slurm_local_cluster.sh"
LAUNCHER = ["hydra/launcher=slurm_cpu", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1"]
POINT = [o for o in MICRO if not o.startswith(("trainer.beta_grid", "logger."))] + ["logger=none"]


def cluster(*args: str) -> None:
    proc = subprocess.run(["bash", str(CLUSTER), *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"the SLURM cluster did not start: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"


@pytest.fixture
def slurm():
    cluster("start")
    yield
    cluster("start")  # leave it with accounting, as the next test expects


def sweep(sweep_dir, *overrides: str, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "run.py", "-m", *LAUNCHER, *POINT, *overrides, f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def job_ids(sweep_dir) -> list[str]:
    return sorted(p.name for p in (sweep_dir / ".submitit").glob("*") if p.is_dir())


def test_beta_sweep_runs_as_slurm_jobs(slurm, tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = sweep(sweep_dir, "trainer.beta=2,10")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = sorted(sweep_dir.glob("*/results.json"))
    assert len(results) == 2
    assert sorted(json.loads(p.read_text())["iterations"][1]["beta"] for p in results) == [2.0, 10.0]
    ids = job_ids(sweep_dir)
    assert ids, "no submitit job folder: the points did not go through SLURM"
    array = ids[0].split("_")[0]
    # The driver returns once the result files exist; the job steps then exit, and accounting follows.
    for _ in range(240):
        queued = subprocess.run(["squeue", "-h", "-j", array], capture_output=True, text=True).stdout.strip()
        states = subprocess.run(
            ["sacct", "-n", "-X", "-o", "JobID,State", "-j", array], capture_output=True, text=True
        )
        if not queued and states.stdout.count("COMPLETED") == 2:
            break
        time.sleep(1)
    assert states.stdout.count("COMPLETED") == 2, states.stdout  # two array tasks, both finished per SLURM


def test_a_bad_point_fails_in_the_driver_before_anything_is_queued(slurm, tmp_path):
    sweep_dir = tmp_path / "sweep"
    before = subprocess.run(["sacct", "-n", "-X", "-a", "-o", "JobID"], capture_output=True, text=True).stdout
    t0 = time.perf_counter()
    proc = sweep(sweep_dir, "trainer.beta=2,-1", timeout=120)
    seconds = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "trainer.beta=-1.0 must be > 0" in out and "nothing was launched" in out, out[-3000:]
    assert seconds < 60, f"the driver took {seconds:.0f}s to refuse the sweep"
    after = subprocess.run(["sacct", "-n", "-X", "-a", "-o", "JobID"], capture_output=True, text=True).stdout
    assert after == before  # no job was submitted
    assert not (sweep_dir / ".submitit").exists()


@pytest.mark.parametrize("accounting", [True, False])
def test_a_run_time_error_reaches_the_driver(slurm, tmp_path, accounting):
    """Without accounting, submitit cannot ask SLURM whether a job ended; a job that exits without a result file
    would leave the driver waiting forever. The job raises instead, so its result file carries the error."""
    if not accounting:
        cluster("start", "--no-accounting")
    proc = sweep(tmp_path / "sweep", "scorer.threshold=0.99", "trainer.beta=2", timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "JobUserError: iteration 1: D is empty" in out and "Lower scorer.threshold" in out, out[-3000:]


def test_a_training_job_started_through_srun_trains_the_in_process_weights(slurm, tmp_path):
    """The multi-node launch path (``launch.srun``: one ``accelerate launch`` per node via srun, machine rank from
    ``SLURM_NODEID``, main process on the allocation's first node), exercised on this cluster's one node with 2
    ZeRO-3 processes inside a real allocation (salloc)."""
    script = f"""
import sys; sys.path.insert(0, {str(ROOT / "tests")!r})
from pathlib import Path
from omegaconf import OmegaConf
from synpo.training.config import LaunchConfig
from synpo.training.launch import run_training_job
from helpers import check_complete_and_equal, distributed_hp, distributed_job
out = Path({str(tmp_path)!r})
local = run_training_job("simpo", out / "local", OmegaConf.structured(LaunchConfig()), hp=distributed_hp(4), **distributed_job("simpo"))
launch = OmegaConf.structured(LaunchConfig(launcher="accelerate", accelerate_config="zero3", num_processes=2, srun=True))
launched = run_training_job("simpo", out / "launched", launch, hp=distributed_hp(2), **distributed_job("simpo"))
assert launched["processes"] == 2 and launched["deepspeed_zero_stage"] == 3, launched
check_complete_and_equal(out / "local", out / "launched")
print("SRUN-OK")
"""
    proc = subprocess.run(
        ["salloc", "--nodes=1", "--cpus-per-task=2", sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and "SRUN-OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "launched.result.json").read_text())
    assert result["slurm_step_id"] is not None  # the ranks ran in a job step that srun started


def _job_log(sweep_dir) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((sweep_dir / ".submitit").glob("*/*_log.*")))


def _comparable(sweep_dir) -> list[dict]:
    """The results rows without what describes the attempt rather than the outcome: wall seconds, compute, and
    train_loss (the trainer's mean over the steps run in the attempt that finished the job)."""
    [results] = sweep_dir.glob("*/results.json")

    def strip(d):
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k not in ("seconds", "compute", "train_loss")}
        return d

    return [strip(r) for r in json.loads(results.read_text())["iterations"]]


LONG_TRAINING = ["trainer.beta=2", "trainer.batch_size=2", "trainer.epochs=8"]  # SimPO: 128 steps of 2 pairs


def _preempt_mid_training(sweep_dir, action) -> subprocess.CompletedProcess:
    """Run one point in the background; once its SimPO job has logged a loss (step 10: CPO's log has
    ``rewards/chosen``), apply ``action(job_id)``; then let the requeued job start at once and wait for the driver."""
    cmd = [sys.executable, "run.py", "-m", *LAUNCHER, *POINT, *LONG_TRAINING, f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    driver = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and driver.poll() is None:
        if (sweep_dir / ".submitit").is_dir() and "'rewards/chosen'" in _job_log(sweep_dir):
            break
        time.sleep(0.5)
    [job] = job_ids(sweep_dir)
    action(job)
    time.sleep(5)
    subprocess.run(["scontrol", "update", f"JobId={job.split('_')[0]}", "StartTime=now"], capture_output=True)
    out, _ = driver.communicate(timeout=900)
    return subprocess.CompletedProcess(cmd, driver.returncode, out, "")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("reference") / "sweep"
    proc = sweep(sweep_dir, *LONG_TRAINING)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return _comparable(sweep_dir)


@pytest.mark.parametrize("how", ["scontrol requeue", "submitit USR2"], ids=["scontrol_requeue", "usr2"])
def test_a_requeue_mid_training_resumes_from_the_step_checkpoint(slurm, uninterrupted, tmp_path, how):
    """``scontrol requeue`` (SLURM sends SIGTERM, then requeues) and submitit's own path (USR2: submitit
    checkpoints and requeues): the SimPO job saves a checkpoint at its next step boundary, the requeued job skips
    the finished stages and resumes training from that step, and the results equal an uninterrupted run's."""
    sweep_dir = tmp_path / "sweep"
    if how == "scontrol requeue":
        action = lambda job: subprocess.run(["scontrol", "requeue", job], check=True)  # noqa: E731
    else:
        action = lambda job: subprocess.run(["scancel", "--signal=USR2", job], check=True)  # noqa: E731
    proc = _preempt_mid_training(sweep_dir, action)
    log = _job_log(sweep_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + log[-3000:]
    assert "checkpointing at the end of this training step" in log
    assert "resuming training from" in log and "beta_2/model.partial/checkpoint-" in log, log[-3000:]
    assert "done earlier" in log  # the requeued attempt skipped the stages finished before the signal
    got = _comparable(sweep_dir)
    diff = {
        (i, k) for i, (g, w) in enumerate(zip(got, uninterrupted, strict=True)) for k in g | w if g.get(k) != w.get(k)
    }
    assert not diff, {(i, k): (got[i].get(k), uninterrupted[i].get(k)) for i, k in diff}
