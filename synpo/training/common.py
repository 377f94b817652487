"""What every training job shares: hyperparameters, TRL arguments, step-level resume and the atomic final save."""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from synpo.artifacts import COMPUTE, fingerprint, replace_dir, sibling
from synpo.compute import TRAIN_PASSES, sequence_compute
from synpo.schema import spec, speed_fields
from synpo.training import precision, preemption

log = logging.getLogger(__name__)


SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")


@dataclass
class OptimConfig:
    """One training job's optimisation settings."""

    learning_rate: float = spec(1e-5, "peak learning rate", gt=0)
    epochs: float = spec(1.0, "passes over the data (used when max_steps <= 0)")
    max_steps: int = spec(-1, "optimizer steps; -1: from epochs")
    batch_size: int = spec(8, "examples per device per forward pass", gt=0)
    grad_accum: int = spec(1, "gradient accumulation steps (with global_batch_size set: derived, leave at 1)", gt=0)
    global_batch_size: int | None = spec(
        None,
        "examples per optimizer step over all processes and machines (the paper's batch size); grad_accum is "
        "derived as global / (batch_size x processes x machines), and batch_size becomes a speed setting; null: "
        "batch_size x grad_accum x processes x machines",
        gt=0,
    )
    warmup_ratio: float = spec(0.1, "share of the steps spent warming up", ge=0, lt=1)
    scheduler: str = spec("cosine", "learning-rate schedule", choices=SCHEDULERS)
    optimizer: str = spec("adamw_torch", "a transformers optimizer name (adamw_torch, rmsprop, ...)")
    weight_decay: float = spec(0.0, "decoupled weight decay", ge=0)
    max_length: int = spec(512, "tokens of prompt + response", gt=0)
    max_prompt_length: int = spec(256, "tokens of the prompt", gt=0)
    gradient_checkpointing: bool = spec(
        False, "recompute activations in the backward pass (7B runs need it)", speed=True
    )
    save_steps: int = spec(
        0, "a checkpoint every this many steps, from which a crash resumes; 0: none", ge=0, speed=True
    )


@dataclass
class HParams(OptimConfig):
    """One training job's settings: the trainer group's optimisation fields (their defaults live in ``OptimConfig``
    alone), plus the job's seed and the model's dtype."""

    seed: int = 0
    dtype: str = "float32"

    def identity(self) -> dict:
        """The settings the trained model depends on, for fingerprints: all but the trainer schema's speed-only
        fields (``OptimConfig``: checkpoint interval, activation recomputation)."""
        speed = set(speed_fields(OptimConfig))
        if self.global_batch_size is not None:  # how the global batch is split over passes and processes
            speed |= {"batch_size", "grad_accum"}
        return {k: v for k, v in asdict(self).items() if k not in speed}


def optimizer_steps(hp: HParams, n_examples: int, world_size: int = 1) -> int:
    """The optimizer steps a job of ``n_examples`` takes (as transformers counts them: partial batches count)."""
    if hp.max_steps > 0:
        return hp.max_steps
    batches = math.ceil(n_examples / (hp.batch_size * world_size))
    return math.ceil(hp.epochs * max(1, math.ceil(batches / hp.grad_accum)))


def warmup_setting(hp: HParams, n_examples: int) -> float:
    """``warmup_steps`` for transformers: the ratio (it takes ceil(ratio x steps) warmup steps), or 0 when that would
    cover every step. A linear warmup runs its first step at lr 0, so a job whose steps do not exceed its warmup
    steps would leave the weights unchanged: a one-step job trained nothing before this guard."""
    steps = optimizer_steps(hp, n_examples, int(os.environ.get("WORLD_SIZE", "1")))
    if hp.warmup_ratio > 0 and math.ceil(hp.warmup_ratio * steps) >= steps:
        log.warning(
            "%d optimizer step(s) would all be warmup at warmup_ratio=%s (the first at lr 0): training without "
            "warmup instead; give more data or lower warmup_ratio to silence this",
            steps,
            hp.warmup_ratio,
        )
        return 0
    return hp.warmup_ratio


def trl_common_kwargs(hp: HParams, work: Path, n_examples: int) -> dict:
    """Keyword arguments shared by every TRL config we build, for a job of ``n_examples``."""
    import torch

    on_gpu = torch.cuda.is_available()
    return dict(
        output_dir=str(work),
        learning_rate=hp.learning_rate,
        num_train_epochs=hp.epochs,
        max_steps=hp.max_steps,
        per_device_train_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.grad_accum,
        warmup_steps=warmup_setting(hp, n_examples),
        lr_scheduler_type=hp.scheduler,
        optim=hp.optimizer,
        weight_decay=hp.weight_decay,
        seed=hp.seed,
        data_seed=hp.seed,
        bf16=hp.dtype == "bfloat16",  # mixed precision on every device: see ``precision.weights_dtype``
        use_cpu=not on_gpu,
        save_strategy="steps" if hp.save_steps > 0 else "no",
        save_steps=hp.save_steps if hp.save_steps > 0 else 500,
        save_total_limit=1,
        logging_steps=10,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        activation_checkpointing=hp.gradient_checkpointing,
    )


def fit_prompt(tokenizer, prompt: str, answers: list[str], hp: HParams, system: str | None = None) -> str:
    """The user message ``prompt`` cut as the SimPO and SPIN trainers cut a prompt (TRL's former
    ``truncation_mode="keep_end"``, their default): when the rendered prompt and the longer answer exceed
    ``hp.max_length`` tokens, the rendered prompt keeps its last ``hp.max_prompt_length`` tokens. The template's own
    tokens (BOS, role headers) are kept whole, so the cut falls at the start of the message's text; an answer still
    too long is cut at its end by the trainer's ``max_length``. TRL 1.x has no ``max_prompt_length`` of its own.
    ``system``: the system message the prompt is rendered after, if any (its tokens count as the template's)."""
    from synpo.modeling import render_prompts

    def length(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def rendered(user: str) -> str:
        return render_prompts(tokenizer, [prompt_messages(user, system)])[0]

    longest = max((length(a) for a in answers), default=0)
    if length(rendered(prompt)) + longest <= hp.max_length:
        return prompt
    keep = hp.max_prompt_length - length(rendered(""))
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[-keep:], clean_up_tokenization_spaces=False) if keep > 0 else ""


def prompt_messages(user: str, system: str | None = None) -> list[dict]:
    """A training prompt as chat messages: the user's, after a system message when ``system`` is not None (the SPIN
    repo inserts an empty one)."""
    return [
        *([{"role": "system", "content": system}] if system is not None else []),
        {"role": "user", "content": user},
    ]


def training_tokenizer(model_path: str, trust_remote_code: bool = False):
    """The tokenizer every job starts from (and TRL's experimental notice silenced)."""
    from synpo.modeling import load_tokenizer

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    return load_tokenizer(model_path, trust_remote_code)


def training_model(model_path: str, hp: HParams, args, trust_remote_code: bool = False, frozen: bool = False):
    """A model for the job whose TRL arguments ``args`` are already made. The order matters under a ZeRO-3 profile:
    making the arguments registers DeepSpeed's config with transformers, so that ``from_pretrained`` creates the
    weights partitioned across the ranks (``deepspeed.zero.Init``) instead of a whole copy in each rank's memory
    (8 x 14.5 GB of host memory for a 7B model in bf16 on one node). ``args`` is taken to make the order explicit."""
    from synpo.modeling import load_causal_lm

    if args is None:
        raise ValueError("make the trainer's arguments before its model (ZeRO-3 partitions the model at load)")
    held = precision.weights_dtype(hp.dtype, args, frozen)
    model = load_causal_lm(model_path, held, trust_remote_code, precision.attention(hp.dtype))
    model.synpo_held_at_load = held_share(model)  # reported in the job's result
    model.synpo_save_dtype = hp.dtype
    return model


def held_share(model) -> float:
    """The share of the model's parameters that this process holds: 1 for a whole copy; about 1 / ranks for a model
    that ZeRO-3 created partitioned (each parameter's ``ds_numel`` is its full size, ``ds_tensor`` this rank's part)."""
    held = total = 0
    for p in model.parameters():
        total += getattr(p, "ds_numel", p.numel())
        held += getattr(p, "ds_tensor", p).numel()
    return held / max(1, total)


def process_rank() -> int:
    """This process's global rank under ``accelerate launch`` (torchrun sets ``RANK``); 0 when run alone."""
    return int(os.environ.get("RANK", "0"))


def prepare_workdir(out_dir: Path, key: dict, rank: int | None = None, wait_seconds: float = 600.0) -> Path:
    """The scratch directory ``<out>.partial`` for a job; kept across a crash only if the job is the same one.

    Rank 0 alone clears and stamps it; every other rank waits until the stamp is this job's. Ranks that each cleared
    it raced: one's ``mkdir`` met the other's directory, or one removed the directory the other had just stamped."""
    out_dir = Path(out_dir)
    work = sibling(out_dir, "partial")
    stamp = fingerprint({k: (v.identity() if isinstance(v, HParams) else v) for k, v in key.items()})
    rank = process_rank() if rank is None else rank
    if rank != 0:
        return _await_stamp(work, stamp, rank, wait_seconds)
    if work.exists() and _stamp(work) == stamp:
        return work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    scratch = work / "JOB.tmp"
    scratch.write_text(stamp)
    os.replace(scratch, work / "JOB")  # a waiting rank reads the whole stamp or none
    return work


def _stamp(work: Path) -> str | None:
    try:
        return (work / "JOB").read_text()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _await_stamp(work: Path, stamp: str, rank: int, wait_seconds: float) -> Path:
    deadline = time.monotonic() + wait_seconds
    while _stamp(work) != stamp:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"rank {rank} waited {wait_seconds:.0f} s for rank 0 to prepare the job's scratch "
                f"directory {work}, and it did not: rank 0 failed before training (its error is earlier in the "
                "launch log), or the ranks do not share this filesystem. Multi-node jobs need the run directory "
                "on a filesystem every node sees."
            )
        time.sleep(0.05)
    return work


def finish_training(trainer, tokenizer, work: Path, out_dir: Path, n_examples: int) -> dict:
    """Train (resuming from the newest complete checkpoint in ``work`` if any), then move the final model to
    ``out_dir``."""
    checkpoints = complete_checkpoints(work, trainer.accelerator.num_processes)
    if checkpoints:
        log.info("resuming training from %s", checkpoints[-1])
    trainer.add_callback(preemption.stop_at_signal_callback())
    with preemption.training():
        result = trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    if preemption.requested() is not None:
        trainer.accelerator.wait_for_everyone()
        newest = _checkpoints(work)
        raise preemption.Preempted(preemption.requested(), str(newest[-1]) if newest else str(work))
    final = Path(work) / "final"
    precision.to_saved_dtype(trainer)
    trainer.save_model(str(final))  # every rank: ZeRO-3 gathers the sharded weights here
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(final))
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(final, out_dir)
        shutil.rmtree(work, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return {
        "train_loss": round(float(result.training_loss), 6),
        "steps": int(result.global_step),
        "train_seconds": round(float(result.metrics.get("train_runtime", 0.0)), 3),
        "examples": n_examples,
        "deepspeed_zero_stage": _zero_stage(trainer),
        "processes": trainer.accelerator.num_processes,
        "held_at_load": round(getattr(trainer.model, "synpo_held_at_load", 1.0), 4),
        COMPUTE: trained_compute(trainer.train_dataset, trainer.args.max_length, _passes(trainer)),
    }


# The token columns of each TRL trainer's tokenized dataset: the sequences one example trains, as sums of columns.
SEQUENCE_COLUMNS = (
    (("chosen_input_ids",), ("rejected_input_ids",)),  # CPO (SimPO): whole prompt + answer sequences
    (("prompt_ids", "chosen_ids"), ("prompt_ids", "rejected_ids")),  # DPO: prompt and answer apart
    (("input_ids",),),  # SFT
)


def trained_compute(dataset, max_length: int | None, passes: float) -> dict | None:
    """The model arithmetic (``synpo.compute``) of ``passes`` forward-pass equivalents over ``dataset`` as the
    trainer tokenized it, each sequence capped at ``max_length``; None for a layout not in ``SEQUENCE_COLUMNS``."""
    import numpy as np
    import pyarrow.compute as pc

    names = set(dataset.column_names)
    layout = next((seqs for seqs in SEQUENCE_COLUMNS if all(set(cols) <= names for cols in seqs)), None)
    if layout is None:
        return None
    table = dataset.select_columns(sorted({c for cols in layout for c in cols})).with_format("arrow")[:]
    lengths = []
    for cols in layout:
        n = sum(pc.list_value_length(table.column(c)).to_numpy(zero_copy_only=False) for c in cols)
        lengths.append(np.minimum(n, max_length) if max_length else n)
    return sequence_compute((int(x) for x in np.concatenate(lengths)), passes)


def complete_checkpoints(work: Path, world_size: int) -> list[Path]:
    """The step checkpoints in ``work`` that a job of ``world_size`` processes can resume from, oldest first.

    HF writes a checkpoint in place, the trainer's state (``trainer_state.json``) last, after the weights, the
    optimizer and, under DeepSpeed, its ``latest`` tag; a checkpoint cut off while it was written (a ZeRO-3
    checkpoint of a 7B model is about 100 GB, against SLURM's delay between its signal and the kill) lacks them and
    is passed over with a warning, so a requeued job resumes from the one before instead of failing every time. A
    DeepSpeed checkpoint written by another number of ranks cannot be loaded: that is a ``UserError`` saying what
    to do."""
    from synpo.errors import UserError

    complete = []
    for c in _checkpoints(work):
        deepspeed = any(c.glob("global_step*"))
        if (c / "trainer_state.json").is_file() and (not deepspeed or (c / "latest").is_file()):
            complete.append(c)
        else:
            log.warning("checkpoint %s was cut off while it was written: not resuming from it", c)
    ranks = checkpoint_ranks(complete[-1]) if complete else None
    if ranks is not None and ranks != world_size:
        raise UserError(
            f"{complete[-1]} was written by {ranks} DeepSpeed ranks, and this job runs {world_size}: a ZeRO "
            f"checkpoint resumes only on as many ranks. Rerun with {ranks} processes in all (launch.num_processes x "
            f"launch.num_machines; with a global_batch_size set, the batch stays the same), or delete {work} to "
            "restart this job from its first step; every finished stage is kept either way."
        )
    return complete


def checkpoint_ranks(checkpoint: Path) -> int | None:
    """How many ranks wrote a DeepSpeed checkpoint (one optimizer-state file each), or None for a plain one."""
    files = Path(checkpoint).glob("global_step*/*_optim_states.pt")
    return len({f.name.split("_mp_rank")[0] for f in files}) or None


def _checkpoints(work: Path) -> list[Path]:
    """The step checkpoints in a job's work directory, oldest first."""
    return sorted(Path(work).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))


def _passes(trainer) -> float:
    """Forward-pass equivalents per example over the job: 3 per epoch, 4 with a frozen reference model (DPO)."""
    per_epoch = TRAIN_PASSES + (1 if getattr(trainer, "ref_model", None) is not None else 0)
    return per_epoch * float(trainer.state.epoch or 0.0)


def _zero_stage(trainer) -> int | None:
    """The ZeRO stage DeepSpeed actually ran with, or None when DeepSpeed was not used."""
    if not getattr(trainer, "is_deepspeed_enabled", False):
        return None
    return int(trainer.accelerator.state.deepspeed_plugin.deepspeed_config["zero_optimization"]["stage"])
