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
    raise UserError(f"scorer.name={cfg.scorer.name!r} is not available yet; choose 'verifier'.")
