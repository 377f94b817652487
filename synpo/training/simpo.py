"""SimPO preference training through TRL's CPO trainer (``loss_type="simpo"``, ``cpo_alpha=0``).

SimPO (Meng et al., 2024), per pair (x, y_w, y_l), with no reference model:

    L = -log sigmoid( beta/|y_w| * log pi(y_w|x) - beta/|y_l| * log pi(y_l|x) - gamma )

TRL computes length-averaged log-probabilities for ``loss_type="simpo"`` and takes ``simpo_gamma`` as the absolute
margin gamma (it divides by beta and multiplies back). ``cpo_alpha=0`` removes CPO's extra NLL term, leaving pure
SimPO. We configure TRL and do not fork its trainer; ``tests/test_simpo_loss.py`` checks this path on hand-computed
numbers.
"""

from __future__ import annotations

from pathlib import Path

from synpo.modeling import end_of_turn_id
from synpo.training.common import (
    HParams,
    finish_training,
    fit_prompt,
    prepare_workdir,
    training_model,
    training_tokenizer,
    trl_common_kwargs,
)
from synpo.training.head import compact_head_applies, compact_pair_head


def with_eos(tokenizer, eos_id: int | None):
    """``tokenizer`` itself when its EOS is ``eos_id`` (or that is None), else a copy whose EOS is that token."""
    import copy

    if eos_id is None or eos_id == tokenizer.eos_token_id:
        return tokenizer
    other = copy.deepcopy(tokenizer)
    other.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
    return other


def build_simpo_trainer(
    model_path: str,
    pairs: list[dict],
    work: Path,
    hp: HParams,
    beta: float,
    gamma: float,
    trust_remote_code: bool = False,
):
    """A TRL CPOTrainer set up as SimPO on ``pairs`` (``{"prompt", "chosen", "rejected"}``, prompt = user message)."""
    tokenizer = training_tokenizer(model_path, trust_remote_code)
    from datasets import Dataset
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    from synpo.modeling import render_prompts

    prompts = [fit_prompt(tokenizer, p["prompt"], [p["chosen"], p["rejected"]], hp) for p in pairs]
    rendered = render_prompts(tokenizer, prompts)
    # TRL's CPO path appends the tokenizer's EOS to both answers; SFT, DPO and generation end an answer with the
    # template's end of turn (Llama-3: <|eot_id|>, not <|end_of_text|>), so the trainer gets a tokenizer whose EOS
    # is that token. The model is saved with the original tokenizer.
    trainer_tokenizer = with_eos(tokenizer, end_of_turn_id(tokenizer))
    dataset = Dataset.from_list(
        [{"prompt": r, "chosen": p["chosen"], "rejected": p["rejected"]} for r, p in zip(rendered, pairs, strict=True)]
    )
    args = CPOConfig(
        **trl_common_kwargs(hp, work, len(pairs)),
        loss_type="simpo",
        cpo_alpha=0.0,
        beta=beta,
        simpo_gamma=gamma,
        max_length=hp.max_length,
        remove_unused_columns=False,
    )
    model = training_model(model_path, hp, args, trust_remote_code)
    trainer = CPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=trainer_tokenizer)
    if compact_head_applies(trainer.model, hp.dtype):
        compact_pair_head(trainer)
    return trainer, tokenizer


def train_simpo(
    model_path: str,
    pairs: list[dict],
    out_dir: Path,
    hp: HParams,
    beta: float,
    gamma: float,
    trust_remote_code: bool = False,
) -> dict:
    """Train ``model_path`` with SimPO on ``pairs``; save the result to ``out_dir``."""
    if not pairs:
        raise ValueError(f"no preference pairs to train {out_dir} on: every pair was filtered out")
    work = prepare_workdir(out_dir, {"hp": hp, "model": model_path, "pairs": pairs, "beta": beta, "gamma": gamma})
    trainer, tokenizer = build_simpo_trainer(model_path, pairs, work, hp, beta, gamma, trust_remote_code)
    return finish_training(trainer, tokenizer, work, Path(out_dir), len(pairs))
