"""Mixed precision without DeepSpeed: what ``model.dtype=bfloat16`` means for a training job's weights, attention,
autocast's casts and the saved model (with DeepSpeed, its bf16 mode decides these itself)."""

from __future__ import annotations

import contextlib


def attention(dtype: str) -> str | None:
    """The attention a training job's model runs: eager in bf16 on a CPU, where torch's fused (flash) CPU kernel
    trained SmolLM2 slower than eager attention's bf16 matmuls (LOG 2026-12-07); transformers' default elsewhere."""
    import torch

    return "eager" if dtype == "bfloat16" and not torch.cuda.is_available() else None


def weights_dtype(dtype: str, args, frozen: bool = False) -> str:
    """The dtype a job's weights are held in when ``model.dtype`` is ``dtype``. bfloat16 means mixed precision on
    every device, as ``args.bf16`` tells the trainer: under DeepSpeed, its bf16 mode keeps float32 master weights and
    optimizer state itself (the model loads in bf16, each rank its part); without DeepSpeed, the trained weights stay
    float32 and autocast runs the matmuls in bf16 (AMX on a CPU, tensor cores on a GPU). Weights held in bf16 would
    take each AdamW step in bf16, whose 8-bit mantissa rounds away a step below about 1/256 of the weight. A frozen
    model (DPO's reference) takes no step and stays in ``dtype``."""
    if dtype != "bfloat16" or frozen or getattr(args, "deepspeed_plugin", None) is not None or args.deepspeed:
        return dtype
    return "float32"


@contextlib.contextmanager
def casts_kept_per_update(trainer):
    """Under autocast mixed precision (bf16 with float32 weights, no DeepSpeed: ``weights_dtype``), autocast casts
    each trained weight to bf16 once per forward and drops the copies when its context exits, that is once per
    micro-batch: with 4 micro-batches an update, 4 casts of every weight where 1 would do (autocast's casts were 14%
    of SmolLM2's SFT time on a CPU, LOG 2026-12-07). Within this context each update keeps autocast's cache open from
    its first micro-batch until its optimizer step, so a weight is cast once per update. The copies are the same
    bf16 values and the gradients flow through the same cast, so training is unchanged bit for bit
    (``tests/test_precision.py``): a speed setting with nothing to choose, on wherever it applies."""
    import torch
    from transformers import TrainerCallback

    held = []

    def release() -> None:
        if held:
            held.pop()
            if torch.autocast_decrement_nesting() == 0:
                torch.clear_autocast_cache()

    class KeepCasts(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if not held:  # nesting above 0 keeps the cache past each forward's autocast exit
                torch.autocast_increment_nesting()
                held.append(True)

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            release()  # the step changes the weights: their bf16 copies go before it

    applies = (
        trainer.args.bf16
        and not getattr(trainer, "is_deepspeed_enabled", False)
        and any(p.requires_grad and p.dtype == torch.float32 for p in trainer.model.parameters())
    )
    callback = KeepCasts() if applies else None
    if callback is not None:
        trainer.add_callback(callback)
    try:
        yield
    finally:
        release()  # an update cut short (a preemption, an error) leaves no stale copies for the next job
        if callback is not None:
            trainer.remove_callback(callback)


def to_saved_dtype(trainer) -> None:
    """Mixed precision's float32 master weights are saved in the model's dtype (``weights_dtype``), as DeepSpeed's
    bf16 mode saves them: the next job and the generator load what a GPU run would have written."""
    import torch

    dtype = getattr(trainer.model, "synpo_save_dtype", None)
    if dtype and not getattr(trainer, "is_deepspeed_enabled", False):
        trainer.model.to(getattr(torch, dtype))
