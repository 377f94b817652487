"""DPO-loss training against a frozen reference model with TRL's DPOTrainer (SPIN's objective).

SPIN (Chen et al., 2024) per pair (x, real y, generated y'), with pi_ref the previous iteration's frozen model and
**summed** token log-probabilities:

    L = -log sigmoid( beta * [ (log pi(y|x) - log pi_ref(y|x)) - (log pi(y'|x) - log pi_ref(y'|x)) ] )

which is TRL's ``loss_type=["sigmoid"]`` DPO loss. ``tests/test_spin.py`` checks it on hand-computed cases
(``test_loss_is_log2_when_policy_equals_reference``, ``test_loss_uses_summed_logps_against_the_reference``).
"""

from __future__ import annotations

from pathlib import Path

from synpo.training.common import (
    HParams,
    finish_training,
    fit_prompt,
    prepare_workdir,
    prompt_messages,
    training_model,
    training_tokenizer,
    trl_common_kwargs,
)
from synpo.training.head import compact_head_applies, compact_lm_head


def build_dpo_trainer(
    model_path: str,
    ref_path: str,
    pairs: list[dict],
    work: Path,
    hp: HParams,
    beta: float,
    trust_remote_code: bool = False,
    system: str | None = None,
):
    """A TRL DPOTrainer on ``pairs`` (``{"prompt", "chosen", "rejected"}``; prompt = user message, after the system
    message ``system`` when it is not None)."""
    tokenizer = training_tokenizer(model_path, trust_remote_code)
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    dataset = Dataset.from_list(
        [
            {
                "prompt": prompt_messages(
                    fit_prompt(tokenizer, p["prompt"], [p["chosen"], p["rejected"]], hp, system), system
                ),
                "chosen": [{"role": "assistant", "content": p["chosen"]}],
                "rejected": [{"role": "assistant", "content": p["rejected"]}],
            }
            for p in pairs
        ]
    )
    args = DPOConfig(
        **trl_common_kwargs(hp, work, len(pairs)), loss_type=["sigmoid"], beta=beta, max_length=hp.max_length
    )
    model = training_model(model_path, hp, args, trust_remote_code)
    ref_model = training_model(ref_path, hp, args, trust_remote_code, frozen=True).eval()
    trainer = DPOTrainer(
        model=model, ref_model=ref_model, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    for patched in (trainer.model, trainer.ref_model):
        patched = getattr(patched, "module", patched)  # under DeepSpeed the reference is already its engine
        if patched is not None and compact_head_applies(patched, hp.dtype):
            compact_lm_head(patched)
    return trainer, tokenizer


def train_dpo(
    model_path: str,
    ref_path: str,
    pairs: list[dict],
    out_dir: Path,
    hp: HParams,
    beta: float,
    trust_remote_code: bool = False,
    system: str | None = None,
) -> dict:
    """Train ``model_path`` with the DPO loss against ``ref_path`` on ``pairs``; save the result to ``out_dir``."""
    if not pairs:
        raise ValueError(f"no preference pairs to train {out_dir} on")
    key = {"hp": hp, "model": model_path, "ref": ref_path, "pairs": pairs, "beta": beta}
    if system is not None:
        key["system"] = system
    work = prepare_workdir(out_dir, key)
    trainer, tokenizer = build_dpo_trainer(model_path, ref_path, pairs, work, hp, beta, trust_remote_code, system)
    return finish_training(trainer, tokenizer, work, Path(out_dir), len(pairs))
