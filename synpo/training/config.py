"""The training config: optimisation settings shared by every job (``OptimConfig``), the preference trainer's loss
and beta (``trainer``), the SFT trainer's (``sft_trainer``), and the launch topology of every job (``launch``), kept
apart from the hyperparameters. Beta, gamma and per-iteration schedules are resolved here, for every method."""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig

from synpo.registry import Registry
from synpo.schema import spec
from synpo.training.common import HParams, OptimConfig
from synpo.training.launch import ACCELERATE_DIR


@dataclass
class PreferenceTrainerConfig(OptimConfig):
    """What every preference trainer has: the loss that selects it (``TRAINERS``), beta, its search and the
    per-iteration schedules."""

    loss: str = spec("simpo", "the trainer (TRAINERS): simpo, TRL CPO with loss_type=simpo; dpo, TRL DPO")
    beta: float | None = spec(None, "a fixed beta (no search); null: search beta_grid", gt=0)
    beta_grid: list[float] = spec(
        help="betas trained each iteration; the best on validation wins",
        factory=lambda: [2.0, 4.0, 6.0, 8.0, 10.0, 12.0],
        gt=0,
    )
    select_on: str = spec(
        "val_score",
        "the validation metric that picks each iteration's beta (the paper names none; val_score, the scorer's mean "
        "on greedy answers, is ours): val_score, val_score_sampled (sampled answers), val_win_rate (greedy answers "
        "against pi_0's), val_exact (exact content; only where the scorer can tell: the verifier)",
        choices=("val_score", "val_win_rate", "val_score_sampled", "val_exact"),
    )
    beta_schedule: list[float] | None = spec(None, "beta per iteration (index t-1), e.g. SPIN's; null: beta", gt=0)
    lr_schedule: list[float] | None = spec(None, "learning rate per iteration (index t-1); null: learning_rate", gt=0)
    epochs_schedule: list[float] | None = spec(
        None, "epochs per iteration (index t-1), e.g. the SPIN repo's scripts' 3 then 6; null: epochs", gt=0
    )


@dataclass
class SimPOTrainerConfig(PreferenceTrainerConfig):
    """SimPO (SynPO's trainer): length-normalised and reference-free, with a target margin gamma."""

    gamma: float | None = spec(None, "SimPO's absolute target margin (paper: 1.6); or gamma_beta_ratio", ge=0)
    gamma_beta_ratio: float | None = spec(None, "SimPO: gamma = ratio * beta", ge=0)


@dataclass
class DPOTrainerConfig(PreferenceTrainerConfig):
    """DPO on summed log-probabilities against a frozen reference (SPIN's objective, iterative DPO's)."""


def _simpo_problems(cfg: DictConfig) -> list[str]:
    t = cfg.trainer
    if (t.gamma is None) == (t.gamma_beta_ratio is None):
        return [
            f"trainer.gamma={t.gamma} and trainer.gamma_beta_ratio={t.gamma_beta_ratio}: give exactly one of them "
            "(the paper uses gamma=1.6, absolute)"
        ]
    return []


@dataclass(frozen=True)
class TrainerEntry:
    """A preference trainer: its schema (``conf/trainer/<loss>.yaml`` names it) and its own checks. The job that
    trains it is ``synpo.training.launch.JOBS[loss]``."""

    schema: type
    block_problems: Callable[[DictConfig], list[str]] = lambda cfg: []

    def problems(self, cfg: DictConfig) -> list[str]:
        return self.block_problems(cfg)


TRAINERS = Registry(
    "trainer",
    {"simpo": TrainerEntry(SimPOTrainerConfig, _simpo_problems), "dpo": TrainerEntry(DPOTrainerConfig)},
    selector="loss",
)


@dataclass
class SFTTrainerConfig(OptimConfig):
    """Supervised fine-tuning of the prompt generator and the response improver."""


@dataclass
class LaunchConfig:
    """Where every training job runs: in this process, or under `accelerate launch` (DeepSpeed, several GPUs).

    Placement only: the fields marked ``speed`` never enter a fingerprint. On a GPU, another launcher or ZeRO stage
    can move a trained weight in its last bits (other reduction orders); finished jobs are kept all the same."""

    launcher: str = spec(
        "inprocess",
        "inprocess, or accelerate: a job file run by accelerate launch",
        choices=("inprocess", "accelerate"),
        speed=True,
    )
    accelerate_config: str = spec(
        "zero2", "conf/accelerate/<name>.yaml: ddp, zero2 or zero3 (topology only)", speed=True
    )
    num_processes: int = spec(1, "processes (GPUs) per training job under accelerate", gt=0)
    devices: list[int] | None = spec(
        None, "GPU ids for the jobs (CUDA_VISIBLE_DEVICES); null: all visible", ge=0, speed=True
    )
    concurrent_candidates: bool = spec(
        False,
        "train an iteration's beta candidates at once, each on its own num_processes GPUs out of devices",
        speed=True,
    )
    cpu_lanes: int = spec(
        2,
        "no GPU, in-process launcher: train up to this many beta candidates at once, each in a process of one "
        "thread forked from run.py (at most one per CPU). A one-thread job's kernels round differently from a "
        "many-thread one's: in float32 the weights move in their last bits; in bf16 the candidates' validation can "
        "move enough to select another beta (LOG 2026-12-07)",
        gt=0,
        speed=True,
    )
    num_machines: int = spec(1, "nodes one training job spans (num_processes on each), through srun", gt=0)
    keep_candidates: bool = spec(
        False,
        "keep every beta candidate's model; off: once an iteration has selected pi_t, the other candidates' models are "
        "deleted (a 7B run writes 6 x 14.5 GB per iteration), leaving <model>.pruned",
        speed=True,
    )
    allow_cpu: bool = spec(
        False,
        "run settings that mean GPUs (accelerate launch, a bf16 model of 1B+ parameters, tensor-parallel vLLM) on "
        "a machine without CUDA; off: such a run stops before any work",
        speed=True,
    )
    srun: bool = spec(
        False,
        "start each node's accelerate launch with srun inside run.py's SLURM allocation (implied by num_machines > 1)",
        speed=True,
    )


def world_size(launch: DictConfig) -> int:
    """Processes that one training job runs on: num_processes on each of num_machines under accelerate, else 1."""
    return launch.num_processes * launch.num_machines if launch.launcher == "accelerate" else 1


def hparams(trainer: DictConfig, model: DictConfig, launch: DictConfig, seed: int, t: int | None = None) -> HParams:
    """The job's hyperparameters from a trainer group (iteration ``t``'s learning rate and epochs where there is a
    schedule), with gradient accumulation derived from ``global_batch_size`` and the launch's processes where it is
    set."""
    values = {f.name: trainer[f.name] for f in dataclasses.fields(HParams) if f.name in trainer}
    if t is not None:
        values.update(
            learning_rate=at_iteration(trainer, "learning_rate", t), epochs=at_iteration(trainer, "epochs", t)
        )
    if trainer.global_batch_size is not None:
        values["grad_accum"] = trainer.global_batch_size // (trainer.batch_size * world_size(launch))
    return HParams(**values, seed=seed, dtype=model.dtype)


SCHEDULES = {"learning_rate": "lr_schedule", "epochs": "epochs_schedule", "beta": "beta_schedule"}


def at_iteration(trainer: DictConfig, key: str, t: int):
    """A trainer's ``key`` at iteration ``t``: its schedule's value (``SCHEDULES``) where one is set, else ``key``."""
    schedule = trainer.get(SCHEDULES[key])
    return float(schedule[t - 1]) if schedule is not None else trainer[key]


def batch_problems(t: DictConfig, prefix: str, launch: DictConfig) -> list[str]:
    """A global batch that the launch's processes and the per-device batch do not divide, with the arithmetic."""
    if t.global_batch_size is None:
        return []
    world, g = world_size(launch), t.global_batch_size
    per_pass = t.batch_size * world
    where = (
        f"{prefix}.batch_size={t.batch_size} x {world} process(es) (launch.num_processes={launch.num_processes} x "
        f"launch.num_machines={launch.num_machines} under launch.launcher={launch.launcher})"
    )
    if t.grad_accum != 1:
        return [
            f"{prefix}.grad_accum={t.grad_accum} with {prefix}.global_batch_size={g}: the accumulation is derived "
            f"from the global batch; set {prefix}.grad_accum=1 (or {prefix}.global_batch_size=null)"
        ]
    if g % per_pass:
        fits = [b for b in range(1, t.batch_size + 1) if g % (b * world) == 0]
        hint = f"set {prefix}.batch_size={fits[-1]}" if fits else f"choose a global batch that {world} divides"
        return [f"{prefix}.global_batch_size={g} is not a multiple of {where} = {per_pass}: {hint}"]
    return []


def beta_candidates(trainer: DictConfig, t: int) -> list[tuple[float, float | None]]:
    """``(beta, gamma)`` to train at iteration ``t``: the schedule's value, the fixed beta, or the whole grid; gamma
    is SimPO's absolute margin (from ``gamma`` or ``gamma_beta_ratio``), None for DPO."""
    if trainer.beta_schedule is not None:
        betas = [float(trainer.beta_schedule[t - 1])]
    elif trainer.beta is not None:
        betas = [float(trainer.beta)]
    else:
        betas = [float(b) for b in trainer.beta_grid]

    def gamma(beta: float) -> float | None:
        if trainer.get("gamma") is not None:
            return float(trainer.gamma)
        ratio = trainer.get("gamma_beta_ratio")
        return None if ratio is None else float(ratio) * beta

    return [(b, gamma(b)) for b in betas]


def trainer_problems(cfg: DictConfig) -> list[str]:
    """Checks that relate the trainers' fields (and the iteration count their schedules must cover)."""
    p = [*_optim_problems(cfg.trainer, "trainer"), *_optim_problems(cfg.sft_trainer, "sft_trainer")]
    p += batch_problems(cfg.trainer, "trainer", cfg.launch) + batch_problems(
        cfg.sft_trainer, "sft_trainer", cfg.launch
    )
    t, n = cfg.trainer, cfg.method.iterations
    if t.beta is None and t.beta_schedule is None and len(t.beta_grid) == 0:
        p.append(
            "trainer.beta_grid is empty: give at least one beta > 0, e.g. [2,4,6,8,10,12], or a fixed trainer.beta"
        )
    for key in SCHEDULES.values():
        if t[key] is not None and len(t[key]) < n:
            p.append(f"trainer.{key} has {len(t[key])} value(s) but method.iterations={n}: give one per iteration")
    return p


def _optim_problems(t: DictConfig, prefix: str) -> list[str]:
    p = []
    if t.max_steps <= 0 and t.epochs <= 0:
        p.append(f"{prefix}.epochs={t.epochs} and {prefix}.max_steps={t.max_steps}: set epochs > 0 or max_steps > 0")
    if t.max_prompt_length >= t.max_length:
        p.append(f"{prefix}.max_prompt_length={t.max_prompt_length} must be below {prefix}.max_length={t.max_length}")
    return p


def launch_problems(cfg: DictConfig) -> list[str]:
    """Checks that relate the launch topology's fields, and what it needs installed."""
    x, p = cfg.launch, []
    if x.devices is not None and len(x.devices) < x.num_processes:
        p.append(f"launch.devices={list(x.devices)} names fewer GPUs than launch.num_processes={x.num_processes}")
    if x.concurrent_candidates:
        p += _concurrency_problems(x)
    if (x.num_machines > 1 or x.srun) and x.launcher != "accelerate":
        p.append(
            f"launch.num_machines={x.num_machines} (launch.srun={x.srun}) starts accelerate on each node with srun; "
            "set launch.launcher=accelerate (and a multi-node profile, e.g. launch.accelerate_config=zero3_multinode)"
        )
    if x.num_machines > 1 and x.concurrent_candidates:
        p.append("launch.concurrent_candidates=true needs launch.num_machines=1: a candidate spans all the nodes")
    if x.launcher == "accelerate":
        needs = ["accelerate"] + (["deepspeed"] if x.accelerate_config.startswith("zero") else [])
        for package in needs:
            if importlib.util.find_spec(package) is None:
                p.append(
                    f"launch.launcher=accelerate with launch.accelerate_config={x.accelerate_config!r} needs the "
                    f"{package} package, which is not installed: `pip install {package}`"
                )
        if not (ACCELERATE_DIR / f"{x.accelerate_config}.yaml").is_file():
            known = sorted(f.stem for f in ACCELERATE_DIR.glob("*.yaml"))
            p.append(
                f"launch.accelerate_config={x.accelerate_config!r} is not a file in conf/accelerate; choose one of {known}"
            )
    return p


def _concurrency_problems(x: DictConfig) -> list[str]:
    if x.launcher != "accelerate":
        return [
            "launch.concurrent_candidates=true needs launch.launcher=accelerate (each candidate is its own child "
            "process on its own GPUs)"
        ]
    if x.devices is None or len(x.devices) < 2 * x.num_processes:
        return [
            "launch.concurrent_candidates=true needs launch.devices to list at least two disjoint sets of "
            f"launch.num_processes={x.num_processes} GPUs (e.g. launch.devices=[0,1,2,3,4,5] with "
            f"num_processes=1); it lists {None if x.devices is None else list(x.devices)}"
        ]
    if len(set(x.devices)) != len(x.devices):
        return [f"launch.devices={list(x.devices)} repeats a GPU; concurrent candidates need disjoint GPUs"]
    return []
