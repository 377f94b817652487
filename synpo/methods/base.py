"""What a method is: the ``Method`` protocol the loop drives, and the ``Iteration`` it hands back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig

from synpo.artifacts import StageRecord
from synpo.stages import Context


@dataclass
class Iteration:
    """What one iteration hands back to the loop."""

    row: dict  # the iteration's results row (validation metrics of the new policy, counts, beta, ...)
    state: Any  # the method's state for the next iteration
    policy: str  # pi_t's model directory
    policy_record: StageRecord | str  # what pi_t was built from
    prompts_file: Path | None = None  # the iteration's synthetic prompts, for methods that make them
    samples_file: Path | None = None  # its pairs (JSONL): the loop shows the first logger.n_sample_pairs in W&B
    sample_fields: tuple[str, ...] = ()  # the columns of that table


class Method(Protocol):
    """A method, registered by the ``METHODS`` dict of its module under ``synpo/methods/`` (found there by
    ``synpo.methods``): its traits, its checks, and what it does before and in each iteration."""

    schema: type  # its block's schema (a dataclass extending synpo.methods.config.MethodConfig)
    columns: tuple[str, ...]  # the method's columns of the results table
    trainer: str | None  # the preference loss it trains the policy with (trainer=simpo|dpo); None: no such job
    trains_sft: bool  # whether it runs SFT jobs (sft_trainer), e.g. SynPO's prompt generator and improver
    draws_prompts: bool  # whether its prompts come from method.prompt_source (generator, self_instruct, ...)

    def problems(self, cfg: DictConfig) -> list[str]:
        """How the config fails this method's needs (loss, scorer, data), one sentence each."""
        ...

    def prepare(self, ctx: Context, pi0_val: dict) -> Any:
        """The state before iteration 1 (e.g. SynPO trains its prompt generator here)."""
        ...

    def iteration(self, ctx: Context, t: int, state: Any) -> Iteration: ...
