"""Run a training job in-process, or as ``accelerate launch ... -m synpo.training.job <job file>``.

The job file (JSON, written next to the job's output in the run directory) holds everything the ranks need, so they
never re-run Hydra. Topology lives in ``conf/accelerate/*.yaml`` (and the DeepSpeed JSON they name), apart from the
hyperparameters. GPUs are given to the child through ``CUDA_VISIBLE_DEVICES`` from ``launch.devices``.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from omegaconf import DictConfig

from synpo.artifacts import atomic_write_text, read_json, sibling, write_json
from synpo.errors import UserError
from synpo.training import preemption
from synpo.training.common import HParams

log = logging.getLogger(__name__)
ACCELERATE_DIR = Path(__file__).resolve().parents[2] / "conf" / "accelerate"


@dataclass(frozen=True)
class TrainingJob:
    """A kind of training job: the module and function that run it (imported only in the process that trains), the
    argument holding the rows it trains on, and whether it holds a frozen reference model beside the trained one
    (``ref_path``: the model it starts from, for the methods here). Its hyperparameters are ``HParams``, built from
    the ``trainer`` or ``sft_trainer`` block."""

    module: str
    function: str
    rows: str  # "pairs" ({prompt, chosen, rejected}) or "examples" ({prompt, completion})
    reference: bool = False


# The registry of training job kinds; ``trainer.loss`` names one of the preference kinds.
JOBS: dict[str, TrainingJob] = {
    "sft": TrainingJob("synpo.training.sft", "train_sft", "examples"),
    "simpo": TrainingJob("synpo.training.simpo", "train_simpo", "pairs"),
    "dpo": TrainingJob("synpo.training.dpo", "train_dpo", "pairs", reference=True),
}


# What torch says when a GPU's (or the host's) memory runs out, in a rank's log or an exception's text.
OUT_OF_MEMORY = (
    "torch.OutOfMemoryError",
    "CUDA out of memory",
    "DefaultCPUAllocator: can't allocate memory",
    "DefaultCPUAllocator: not enough memory",
)


def out_of_memory(kind: str, out_dir: Path, hp) -> UserError:
    """The paragraph for a training job that ran out of memory: what to change, and that nothing finished is lost."""
    group = "sft_trainer" if JOBS[kind].rows == "examples" else "trainer"
    state = "on" if hp.gradient_checkpointing else "off"
    return UserError(
        f"The {kind} training job ({out_dir}) ran out of memory. Turn {group}.gradient_checkpointing on (it is "
        f"{state}) or lower {group}.batch_size (with {group}.global_batch_size set, the batch the optimizer sees "
        "stays): both are speed settings, so a rerun keeps every finished stage. `python run.py <overrides> --plan` "
        "prints each training job's estimated memory per GPU."
    )


def job_function(kind: str):
    import importlib

    if kind not in JOBS:
        raise ValueError(f"unknown training job kind {kind!r}; known: {sorted(JOBS)}")
    return getattr(importlib.import_module(JOBS[kind].module), JOBS[kind].function)


def accelerate_config_path(name: str) -> Path:
    path = ACCELERATE_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in ACCELERATE_DIR.glob("*.yaml"))
        raise UserError(f"launch.accelerate_config={name!r}: no file {path}. Choose one of {known}.")
    return path


def resolved_accelerate_config(name: str, out: Path) -> Path:
    """A copy of ``conf/accelerate/<name>.yaml`` with its DeepSpeed file made absolute, written to ``out``."""
    src = accelerate_config_path(name)
    config = yaml.safe_load(src.read_text())
    ds = (config.get("deepspeed_config") or {}).get("deepspeed_config_file")
    if ds:
        config["deepspeed_config"]["deepspeed_config_file"] = str((src.parent / ds).resolve())
    atomic_write_text(out, yaml.safe_dump(config))
    return out


def free_port() -> int:
    """A TCP port on this machine that no one listens on now (the OS's choice), for a one-node rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def allocation_problem(nodes: int) -> str | None:
    """Why training cannot start with srun on ``nodes`` nodes from here (no SLURM allocation, or a smaller one), or
    None. The run checks it before any work, and each launch again."""
    if "SLURM_JOB_NODELIST" not in os.environ:
        return (
            f"launch.num_machines={nodes} / launch.srun=true starts training with srun, which needs a SLURM "
            "allocation: run run.py inside one (sbatch --nodes=<n> or salloc; not hydra.launcher.nodes=<n>, which "
            "would run run.py once per node), or set launch.num_machines=1 launch.srun=false."
        )
    have = int(os.environ.get("SLURM_JOB_NUM_NODES", os.environ.get("SLURM_NNODES", "1")))
    if have < nodes:
        return (
            f"launch.num_machines={nodes}, but this SLURM allocation has {have} node(s) (SLURM_JOB_NUM_NODES). "
            f"Allocate {nodes} nodes (sbatch --nodes={nodes}) or lower launch.num_machines."
        )
    return None


def srun_command(accelerate: list[str], job: list[str], nodes: int) -> list[str]:
    """``srun`` starting ``accelerate`` once per node of run.py's SLURM allocation: each node's machine rank is its
    ``SLURM_NODEID`` and the main process is on the allocation's first node. The step gets the allocation's CPUs
    per task explicitly: Slurm 22.05 and later no longer pass ``--cpus-per-task`` from sbatch on to srun, and
    without it every rank of the node would share one CPU."""
    if problem := allocation_problem(nodes):
        raise UserError(problem)
    try:
        hosts = subprocess.run(
            ["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]], capture_output=True, text=True
        )
    except FileNotFoundError:
        raise UserError(
            "launch.srun / launch.num_machines > 1: `scontrol` is not on PATH, so the allocation's first node (the "
            "main process) cannot be found. Run on a node with SLURM's client tools, or set launch.num_machines=1 "
            "launch.srun=false."
        ) from None
    if hosts.returncode != 0 or not hosts.stdout.split():
        raise UserError(f"`scontrol show hostnames $SLURM_JOB_NODELIST` failed: {hosts.stderr.strip()}")
    per_node = [*accelerate, "--num_machines", str(nodes), "--main_process_ip", hosts.stdout.split()[0]]
    script = (
        " ".join(map(shlex.quote, per_node)) + ' --machine_rank "$SLURM_NODEID" ' + " ".join(map(shlex.quote, job))
    )
    cpus = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("SLURM_CPUS_ON_NODE")
    step = ["srun", f"--nodes={nodes}", "--ntasks-per-node=1", *([f"--cpus-per-task={cpus}"] if cpus else [])]
    return [*step, "--kill-on-bad-exit=1", "bash", "-c", f"exec {script}"]


def device_slots(launch: DictConfig, n_jobs: int) -> list[list[int] | None]:
    """Disjoint GPU sets for ``n_jobs`` training jobs that may run at once.

    With ``launch.concurrent_candidates`` and ``launch.devices`` listing at least two sets of
    ``launch.num_processes`` GPUs, the devices are cut into such sets (8 GPUs, 1 process each: 8 slots). Otherwise
    one slot: ``launch.devices`` (or every visible GPU), and jobs run one after another."""
    if not launch.concurrent_candidates or launch.devices is None:
        return [None if launch.devices is None else list(launch.devices)]
    devices, k = list(launch.devices), launch.num_processes
    slots = [devices[i : i + k] for i in range(0, len(devices) - k + 1, k)]
    return slots[: max(1, n_jobs)]


def _wait_forwarding_preemption(proc: subprocess.Popen) -> None:
    """Wait for the launched job; on a preemption signal to this process, pass SIGTERM on to ``accelerate launch``
    (its agent signals the ranks, which checkpoint at their next step boundary) and keep waiting for it."""
    forwarded = False
    while proc.poll() is None:
        if preemption.requested() is not None and not forwarded:
            log.warning("passing the preemption signal on to the training job (pid %d)", proc.pid)
            proc.send_signal(signal.SIGTERM)
            forwarded = True
        try:
            proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass


@dataclass(frozen=True)
class Slot:
    """Where one of several training jobs that may run at once goes: its GPU set (None: ``launch.devices``, or every
    visible GPU), its index (multi-node jobs rendezvous on ``29500 + index``), and whether it runs in a forked CPU
    lane of one thread (``synpo.training.lanes``)."""

    index: int = 0
    devices: list[int] | None = None
    forked: bool = False


def slots(launch: DictConfig, n_jobs: int) -> list[Slot]:
    """Where ``n_jobs`` jobs that may run at once go, by the machine and the launch topology: disjoint GPU sets
    (``launch.concurrent_candidates``), forked CPU lanes (no GPU, ``launch.cpu_lanes``), or one slot (in turn).
    Callers hand each job a free slot and never ask how it is placed."""
    from synpo.training import lanes

    n_lanes = lanes.available(launch.cpu_lanes, n_jobs, launch.launcher)
    if n_lanes > 1:
        log.info("%d training jobs at once in forked processes of one thread: %d lanes", n_jobs, n_lanes)
        return [Slot(i, None, True) for i in range(n_lanes)]
    sets = device_slots(launch, n_jobs)
    if len(sets) > 1:
        log.info("%d training jobs on %d disjoint GPU sets %s", n_jobs, len(sets), sets)
    return [Slot(i, devices) for i, devices in enumerate(sets)]


# A job's training rows (``pairs`` for SimPO and DPO, ``examples`` for SFT) travel in a file of their own.
DATA_KEYS = tuple(sorted({job.rows for job in JOBS.values()}))  # the arguments that hold training rows


def job_data_files(kwargs: dict, data_dir: Path) -> dict[str, str]:
    """Each training-row list of ``kwargs`` written once to ``data_dir/<key>-<digest>.jsonl``, named by its content:
    the beta candidates of one iteration train on the same D, so their job files point at one copy of it instead
    of each repeating it (at the paper's scale, D reaches 40k pairs of 2048-token answers)."""
    from synpo.artifacts import fingerprint, write_jsonl

    files = {}
    for key in DATA_KEYS:
        if isinstance(kwargs.get(key), list):
            path = Path(data_dir) / f"{key}-{fingerprint(kwargs[key])}.jsonl"
            if not path.is_file():
                write_jsonl(path, kwargs[key])
            files[key] = str(path)
    return files


def _run_here(kind: str, out_dir: Path, slot: Slot, kwargs: dict) -> dict:
    """The job in this process, or in a forked lane; running out of memory is the paragraph that says what to set."""
    if slot.forked:
        from synpo.training.lanes import run_forked

        return run_forked(job_function(kind), out_dir=out_dir, **kwargs)
    try:
        return job_function(kind)(out_dir=out_dir, **kwargs)
    except (RuntimeError, MemoryError) as e:  # torch.OutOfMemoryError is a RuntimeError
        said = f"{type(e).__module__}.{type(e).__name__}: {e}"
        if isinstance(e, MemoryError) or any(m in said for m in OUT_OF_MEMORY):
            raise out_of_memory(kind, Path(out_dir), kwargs["hp"]) from None
        raise


def run_training_job(
    kind: str, out_dir: Path, launch: DictConfig, slot: Slot = Slot(), data_dir: Path | None = None, **kwargs
) -> dict:
    """Train with ``job_function(kind)(out_dir=out_dir, **kwargs)`` under the launcher ``launch.launcher``, in
    ``slot`` (``slots``): in this process, in a forked lane, or under ``accelerate launch`` on the slot's GPUs. What
    is alive first leaves the garbage collector's later passes (``synpo.memory.settle``).

    On one node each launch rendezvouses on a port free at launch; across nodes (srun) on ``29500 + slot.index``, so
    that concurrent multi-node jobs do not collide. Under accelerate, the training rows go to ``data_dir`` (default:
    beside the job file) once per content (``job_data_files``), and the job file names them."""
    from synpo import memory

    memory.settle()
    if launch.launcher == "inprocess":
        return _run_here(kind, out_dir, slot, kwargs)
    out_dir = Path(out_dir)
    job_file, result_file = sibling(out_dir, "job"), sibling(out_dir, "result")
    files = job_data_files(kwargs, data_dir or job_file.parent)
    payload = {k: asdict(v) if isinstance(v, HParams) else v for k, v in kwargs.items() if k not in files}
    request = {"kind": kind, "out_dir": str(out_dir), "result": str(result_file), "kwargs": payload, "files": files}
    write_json(job_file, request)
    result_file.unlink(missing_ok=True)  # what this launch returns, never an earlier attempt's
    acc_cfg = resolved_accelerate_config(launch.accelerate_config, sibling(out_dir, "accelerate"))
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(acc_cfg),
        "--num_processes",
        str(launch.num_processes * launch.num_machines),
    ]
    job = ["-m", "synpo.training.job", str(job_file)]
    if launch.srun or launch.num_machines > 1:  # every node must name the same port: a fixed one per slot
        cmd = srun_command([*cmd, "--main_process_port", str(29500 + slot.index)], job, launch.num_machines)
    else:  # one node: a port free now, so two runs on one machine (or a port still held) never collide
        cmd = [*cmd, "--main_process_port", str(free_port()), *job]
    env = dict(os.environ)
    devices = launch.devices if slot.devices is None else slot.devices
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
    log_file = sibling(out_dir, "launch_log")
    log.info("launching %s (log: %s)", " ".join(cmd), log_file)
    with open(log_file, "w") as f, preemption.training():
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        _wait_forwarding_preemption(proc)
    if preemption.requested() is not None:  # the ranks checkpointed at a step boundary (or were stopped before)
        raise preemption.Preempted(preemption.requested(), str(sibling(out_dir, "partial")))
    if proc.returncode != 0 and result_file.is_file() and "user_error" in read_json(result_file):
        raise UserError(read_json(result_file)["user_error"])
    if proc.returncode != 0 and any(m in log_file.read_text(errors="replace") for m in OUT_OF_MEMORY):
        raise out_of_memory(kind, out_dir, kwargs["hp"])
    if proc.returncode != 0:
        raise RuntimeError(
            f"training job {job_file} failed under accelerate (exit {proc.returncode}); from {log_file}:\n"
            + failure_excerpt(log_file.read_text(errors="replace"))
        )
    return read_json(result_file)


def failure_excerpt(log_text: str, max_lines: int = 40) -> str:
    """What a failed launch's log says about the cause: from the first traceback in it (a rank's; the launcher's
    own ``ChildFailedError`` summary comes last and names no cause) for ``max_lines`` lines, then the log's last
    lines; with no traceback, the log's last ``max_lines`` lines."""
    lines = log_text.splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line), None)
    if first is None or first >= len(lines) - max_lines:
        return "".join(lines[-max_lines:])
    return "".join(lines[first : first + max_lines]) + "[...]\n" + "".join(lines[-max_lines // 4 :])
