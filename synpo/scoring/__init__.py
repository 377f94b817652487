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


def is_pairwise(scorer) -> bool:
    """Pairwise scorers (PairRM) compare two responses and have no pointwise score."""
    return bool(getattr(scorer, "pairwise", False))


def score_gaps(scorer, prompts: list[str], a: list[str], b: list[str]):
    """Per prompt, how much better ``a`` is than ``b``: score(a) - score(b) for pointwise scorers, the scorer's own
    order-averaged comparison for pairwise ones. Returns ``(gaps, scores_a, scores_b)``; the scores are None for a
    pairwise scorer."""
    if is_pairwise(scorer):
        return scorer.gaps(prompts, a, b), None, None
    sa, sb = scorer.score(prompts, a), scorer.score(prompts, b)
    return [x - y for x, y in zip(sa, sb, strict=True)], sa, sb


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
    if cfg.scorer.name == "pairrm":
        from synpo.scoring.pairrm import PairRMScorer

        return PairRMScorer(cfg.scorer.name_or_path, cfg.scorer.batch_size, cfg.scorer.dtype)
    raise UserError(
        f"scorer.name={cfg.scorer.name!r} is not available; choose verifier, reward_model, armorm or pairrm."
    )
