"""Scorers behind one interface: ``score(prompts, responses) -> scores`` plus ``accepts(prompt)``."""

from __future__ import annotations

from typing import Protocol

from omegaconf import DictConfig

from synpo.errors import UserError


class Scorer(Protocol):
    def accepts(self, prompt: str) -> bool:
        """Whether this scorer can judge answers to ``prompt`` (invalid synthetic prompts are dropped)."""
        ...

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        """One score per (prompt, response); higher is better. Pair gaps are compared with ``scorer.threshold``."""
        ...


def make_scorer(cfg: DictConfig) -> Scorer:
    if cfg.scorer.name == "verifier":
        from synpo.scoring.verifier import VerifierScorer

        return VerifierScorer()
    if cfg.scorer.name in ("reward_model", "armorm"):
        from synpo.scoring.reward_model import RewardModelScorer

        s = cfg.scorer
        return RewardModelScorer(
            s.name_or_path,
            s.batch_size,
            s.max_length,
            output="score" if s.name == "armorm" else "logits",
            trust_remote_code=s.trust_remote_code,
            dtype=s.dtype,
        )
    raise UserError(f"scorer.name={cfg.scorer.name!r} is not available; choose verifier, reward_model or armorm.")
