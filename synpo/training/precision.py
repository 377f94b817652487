"""Mixed precision without DeepSpeed: what ``model.dtype=bfloat16`` means for a training job's weights, attention
and the saved model (with DeepSpeed, its bf16 mode decides these itself)."""

from __future__ import annotations


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


def to_saved_dtype(trainer) -> None:
    """Mixed precision's float32 master weights are saved in the model's dtype (``weights_dtype``), as DeepSpeed's
    bf16 mode saves them: the next job and the generator load what a GPU run would have written."""
    import torch

    dtype = getattr(trainer.model, "synpo_save_dtype", None)
    if dtype and not getattr(trainer, "is_deepspeed_enabled", False):
        trainer.model.to(getattr(torch, dtype))
