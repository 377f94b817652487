"""Run a training job in-process, or as ``accelerate launch ... -m synpo.training.job <job file>``.

The job file (JSON, written next to the job's output in the run directory) holds everything the ranks need, so they
never re-run Hydra. Topology lives in ``conf/accelerate/*.yaml`` (and the DeepSpeed JSON they name), apart from the
hyperparameters. GPUs are given to the child through ``CUDA_VISIBLE_DEVICES`` from ``launch.devices``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import yaml
from omegaconf import DictConfig

from synpo.artifacts import atomic_write_text, read_json, sibling, write_json
from synpo.errors import UserError
from synpo.training.common import HParams

log = logging.getLogger(__name__)
ACCELERATE_DIR = Path(__file__).resolve().parents[2] / "conf" / "accelerate"


def job_function(kind: str):
    if kind == "sft":
        from synpo.training.sft import train_sft

        return train_sft
    if kind == "simpo":
        from synpo.training.simpo import train_simpo

        return train_simpo
    if kind == "dpo":
        from synpo.training.dpo import train_dpo

        return train_dpo
    raise ValueError(f"unknown training job kind {kind!r}; known: sft, simpo, dpo")


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


def run_training_job(
    kind: str, out_dir: Path, launch: DictConfig, devices: list[int] | None = None, slot: int = 0, **kwargs
) -> dict:
    """Train with ``job_function(kind)(out_dir=out_dir, **kwargs)`` under the launcher ``launch.launcher``.

    ``devices`` (a slot of ``device_slots``) overrides ``launch.devices``; ``slot`` offsets the rendezvous port so
    that concurrent multi-process jobs do not collide."""
    if launch.launcher == "inprocess":
        return job_function(kind)(out_dir=out_dir, **kwargs)
    out_dir = Path(out_dir)
    job_file, result_file = sibling(out_dir, "job"), sibling(out_dir, "result")
    payload = {k: asdict(v) if isinstance(v, HParams) else v for k, v in kwargs.items()}
    write_json(job_file, {"kind": kind, "out_dir": str(out_dir), "result": str(result_file), "kwargs": payload})
    acc_cfg = resolved_accelerate_config(launch.accelerate_config, sibling(out_dir, "accelerate"))
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(acc_cfg),
        "--num_processes",
        str(launch.num_processes),
        "--main_process_port",
        str(29500 + slot),
        "-m",
        "synpo.training.job",
        str(job_file),
    ]
    env = dict(os.environ)
    devices = launch.devices if devices is None else devices
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
    log_file = sibling(out_dir, "launch_log")
    log.info("launching %s (log: %s)", " ".join(cmd[2:]), log_file)
    with open(log_file, "w") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise RuntimeError(
            f"training job {job_file} failed under accelerate (exit {proc.returncode}); the end of {log_file}:\n{tail}"
        )
    return read_json(result_file)
