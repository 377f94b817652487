"""Supervised fine-tuning on prompt -> completion pairs with TRL's SFTTrainer (loss on the completion only)."""

from __future__ import annotations

import logging
from pathlib import Path

from synpo.training.common import (
    HParams,
    finish_training,
    fit_prompt,
    prepare_workdir,
    training_model,
    training_tokenizer,
    trl_common_kwargs,
)
from synpo.training.head import compact_head_applies, compact_lm_head

log = logging.getLogger(__name__)


def build_sft_trainer(model_path: str, examples: list[dict], work: Path, hp: HParams, trust_remote_code: bool = False):
    """A TRL SFTTrainer on ``examples`` (``{"prompt", "completion"}`` strings): the prompt as a user turn and the
    completion as the assistant turn of the tokenizer's chat template, the rendering generation uses; loss on the
    completion only."""
    tokenizer = training_tokenizer(model_path, trust_remote_code)
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": fit_prompt(tokenizer, e["prompt"], [e["completion"]], hp)}],
                "completion": [{"role": "assistant", "content": e["completion"]}],
            }
            for e in examples
        ]
    )
    args = SFTConfig(
        **trl_common_kwargs(hp, work, len(examples)),
        max_length=hp.max_length,
        completion_only_loss=True,
        packing=False,
    )
    model = training_model(model_path, hp, args, trust_remote_code)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    if compact_head_applies(trainer.model, hp.dtype):
        compact_lm_head(trainer.model, extras=("entropy", "is_top1"))  # what the SFT trainer logs
    return trainer, tokenizer


def train_sft(
    model_path: str,
    examples: list[dict],
    out_dir: Path,
    hp: HParams,
    trust_remote_code: bool = False,
) -> dict:
    """Fine-tune ``model_path`` on ``examples`` (``{"prompt", "completion"}`` strings); save to ``out_dir``."""
    if not examples:
        raise ValueError(f"no training examples for {out_dir}: an upstream filter removed them all")
    out_dir = Path(out_dir)
    work = prepare_workdir(out_dir, {"hp": hp, "model": model_path, "examples": examples})
    trainer, tokenizer = build_sft_trainer(model_path, examples, work, hp, trust_remote_code)
    return finish_training(trainer, tokenizer, work, out_dir, len(examples))
