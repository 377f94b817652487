"""The root config: one schema per Hydra group (each defined beside its component), registered in ConfigStore, and
``validate``, which gathers every problem before any heavy work.

Hydra checks types and unknown keys against the schemas when it composes. ``validate`` then checks each field's
declared choices and bounds (``synpo.schema``), each component's cross-field ``problems(cfg)``, and the method's
own, and raises one ``UserError`` that lists every problem with its key, the bad value and what is allowed. It never
uses ``assert`` (``python -O`` strips them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from synpo.data import DATA_SOURCES, data_file_problems, data_problems
from synpo.errors import UserError
from synpo.evaluation.config import EvalConfig
from synpo.evaluation.groups import eval_problems
from synpo.generation.config import GENERATORS
from synpo.methods import METHODS, get_method
from synpo.modeling import ModelConfig, model_problems
from synpo.schema import schema_problems, spec, speed_fields
from synpo.scoring.config import SCORERS
from synpo.tracking import LoggerConfig, logger_problems, secret_problems
from synpo.training.config import (
    TRAINERS,
    LaunchConfig,
    SFTTrainerConfig,
    launch_problems,
    trainer_problems,
)


@dataclass
class SynpoConfig:
    model: ModelConfig = spec(MISSING, "pi_0 (conf/model)")
    # Each of these five is typed by its option's own schema (its registry entry's), named in the option's YAML.
    data: Any = spec(MISSING, "seed set and keywords (conf/data; synpo.data.DATA_SOURCES)")
    method: Any = spec(MISSING, "the iteration recipe (conf/method; synpo.methods.METHODS)")
    scorer: Any = spec(MISSING, "compares responses (conf/scorer; synpo.scoring.config.SCORERS)")
    generator: Any = spec(
        MISSING, "generation backend and sampling (conf/generator; synpo.generation.config.GENERATORS)"
    )
    trainer: Any = spec(MISSING, "the policy's preference training (conf/trainer; synpo.training.config.TRAINERS)")
    sft_trainer: SFTTrainerConfig = spec(MISSING, "SFT of the generator and improver (conf/sft_trainer)")
    launch: LaunchConfig = spec(help="where training jobs run (topology only)", factory=LaunchConfig)
    eval: EvalConfig = spec(MISSING, "what is measured after each iteration (conf/eval)")
    logger: LoggerConfig = spec(MISSING, "experiment tracking (conf/logger)")
    seed: int = spec(0, "every stage derives its own seed from this one")
    name: str = spec(MISSING, "run label; also the default run directory's name")
    run_dir: str = spec(MISSING, "where stages write; re-running on the same directory resumes")


# The groups with one schema for every option, and those whose options each have their own (a registry).
GROUPS = {
    "model": ModelConfig,
    "sft_trainer": SFTTrainerConfig,
    "eval": EvalConfig,
    "logger": LoggerConfig,
}


REGISTRIES = (DATA_SOURCES, METHODS, SCORERS, GENERATORS, TRAINERS)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="synpo_schema", node=SynpoConfig)
    for group, node in GROUPS.items():
        cs.store(group=group, name=f"base_{group}", node=node)
    for registry in REGISTRIES:
        registry.store(cs)


register_configs()

# Keys that define a run's identity: a run directory made with other values is refused, not silently mixed.
IDENTITY_KEYS = ("model.name_or_path", "data.source", "data.path", "method.name", "seed")

# Each component's checks of how its fields agree with each other and with the rest of the config.
COMPONENT_PROBLEMS = (
    model_problems,
    data_problems,
    trainer_problems,
    launch_problems,
    eval_problems,
    logger_problems,
    secret_problems,
)


# The defaults in conf/ are sized for the tiny world's 1M-parameter model. A real model keeps them only by oversight
# (SFT at 1e-3 wrecked SmolLM2-135M's prompt generator in four steps; 48 new tokens cut most real answers), so
# ``tiny_world_values`` names each one still in force when the model is not the tiny one.
TINY_WORLD_VALUES = {
    "trainer.learning_rate": (1.0e-4, 5.0e-5),  # simpo, dpo
    "sft_trainer.learning_rate": (1.0e-3,),
    "trainer.max_length": (192,),
    "sft_trainer.max_length": (192,),
    "generator.max_new_tokens": (48,),
    "eval.max_new_tokens": (48,),
    "method.n_prompts": (600,),  # a method's paper-scale counts are its *_paper option (conf/method/)
    "method.pairs_per_iteration": (400,),
}


def tiny_world_values(cfg: DictConfig) -> list[str]:
    """``key=value`` for each tiny-world default still in force while the model is not the tiny world's."""
    if cfg.model.name_or_path == "builtin:tiny-sft":
        return []
    unused = set()
    if cfg.trainer.lr_schedule is not None:
        unused.add("trainer.learning_rate")
    if cfg.trainer.epochs_schedule is not None:
        unused.add("trainer.epochs")
    if cfg.method.name in METHODS and not METHODS[cfg.method.name].trains_sft:
        unused |= {k for k in TINY_WORLD_VALUES if k.startswith("sft_trainer.")}
    return [
        f"{key}={OmegaConf.select(cfg, key)}"
        for key, values in TINY_WORLD_VALUES.items()
        if key not in unused and OmegaConf.select(cfg, key) in values
    ]


LOSSES = {"simpo": "SimPO", "dpo": "the DPO loss against a frozen reference"}


def trainer_mismatch(cfg: DictConfig) -> list[str]:
    """The method's declared trainer (its ``trainer`` trait) against ``trainer.loss``."""
    want = get_method(cfg.method.name).trainer
    if want is None or cfg.trainer.loss == want:
        return []
    return [
        f"trainer.loss={cfg.trainer.loss!r}: method {cfg.method.name} trains the policy with {LOSSES[want]}; "
        f"set trainer={want}"
    ]


def speed_keys(cfg: DictConfig | dict) -> set[str]:
    """The dotted names of every speed-only field of a run's config (``spec(..., speed=True)``), each registry
    group read by the schema of the option it names; ``cfg`` may be a saved config loaded as plain data."""
    keys = set(speed_fields(SynpoConfig))
    for registry in REGISTRIES:
        block = cfg.get(registry.group) or {}
        if (name := block.get(registry.selector)) in registry:
            keys |= set(speed_fields(registry[name].schema, registry.group))
    return keys


def collect_problems(cfg: DictConfig, read_files: bool = True) -> list[str]:
    """Every problem in ``cfg``, one sentence each; with ``read_files``, the data files it names are read too."""
    problems = schema_problems(cfg, SynpoConfig, "")
    if read_files:
        problems += data_file_problems(cfg)
    for registry in REGISTRIES:
        problems += registry.problems(cfg)
    if cfg.method.name in METHODS:
        problems += trainer_mismatch(cfg)
    for check in COMPONENT_PROBLEMS:
        problems += check(cfg)
    return problems


def validate(cfg: DictConfig, read_files: bool = True) -> None:
    """Raise one UserError listing every problem in ``cfg``; return None when it is fine. ``read_files=False``
    checks the config alone (a paper config names data files that only exist where the data was prepared)."""
    problems = collect_problems(cfg, read_files)
    if problems:
        raise UserError(
            f"The config has {len(problems)} problem(s):\n  - " + "\n  - ".join(problems) + "\nFix them on the "
            "command line (key=value) or in the YAML under conf/; `python run.py --cfg job` prints the composed config."
        )


GPU_SCALE_PARAMS = 1e9  # a bf16 model this large means GPUs: days per iteration on a CPU


def gpu_reasons(cfg: DictConfig) -> list[str]:
    """The settings of ``cfg`` that mean GPUs: accelerate launch, a bf16 model of ``GPU_SCALE_PARAMS`` or more (or
    of a size that cannot be read here), a tensor-parallel vLLM engine."""
    reasons = []
    if cfg.launch.launcher == "accelerate":
        reasons.append(f"launch.launcher=accelerate with launch.accelerate_config={cfg.launch.accelerate_config}")
    if cfg.model.dtype == "bfloat16":
        from synpo.compute import model_shape
        from synpo.modeling import resolve_model_path

        try:
            params = model_shape(resolve_model_path(cfg.model.name_or_path))["matmul_params"]
        except Exception:  # a hub id without its files here, a config that transformers cannot build offline
            params = None
        if params is None or params >= GPU_SCALE_PARAMS:
            size = "a size that cannot be read offline" if params is None else f"{params / 1e9:.1f}B parameters"
            reasons.append(f"model.dtype=bfloat16 for {cfg.model.name_or_path} ({size})")
    if cfg.generator.backend == "vllm" and cfg.generator.tensor_parallel_size > 1:
        reasons.append(f"generator.tensor_parallel_size={cfg.generator.tensor_parallel_size}")
    if cfg.scorer.replicas > 1:
        reasons.append(f"scorer.replicas={cfg.scorer.replicas}")
    return reasons


def require_gpu_if_meant(cfg: DictConfig) -> None:
    """Stop before any work when the settings mean GPUs and this machine has no CUDA device (a login node, a job
    without a GPU allocation, a CPU build of torch), unless ``launch.allow_cpu``. Checked in the job, not in
    ``validate``: a SLURM sweep validates its points on a login node."""
    import torch

    if torch.cuda.is_available() and cfg.scorer.replicas > torch.cuda.device_count():
        raise UserError(
            f"scorer.replicas={cfg.scorer.replicas} places one copy of the scorer per GPU, but this job sees "
            f"{torch.cuda.device_count()} GPU(s). Set scorer.replicas to at most that, or allocate more GPUs."
        )
    if cfg.launch.allow_cpu or torch.cuda.is_available():
        return
    reasons = gpu_reasons(cfg)
    if reasons:
        raise UserError(
            f"These settings mean GPUs ({'; '.join(reasons)}), but torch sees no CUDA device on this machine "
            f"({torch.__version__}: a login node, a job without a GPU allocation such as SLURM's --gres=gpu:8, or a "
            "CPU build of torch). The run stops before any work. Run it on a GPU node, or set launch.allow_cpu=true "
            "to run it on the CPU anyway."
        )
