"""Scorers behind one interface: ``score(prompts, responses) -> scores`` plus ``accepts(prompt)``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig

from synpo.artifacts import fingerprint, keep_only_shards_of, read_jsonl, write_jsonl
from synpo.errors import UserError

log = logging.getLogger(__name__)


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


def _gaps(scorer, prompts: list[str], a: list[str], b: list[str]):
    if is_pairwise(scorer):
        return scorer.gaps(prompts, a, b), None, None
    sa, sb = scorer.score(prompts, a), scorer.score(prompts, b)
    return [x - y for x, y in zip(sa, sb, strict=True)], sa, sb


def score_gaps(
    scorer,
    prompts: list[str],
    a: list[str],
    b: list[str],
    shard_dir: Path | None = None,
    shard_size: int = 1024,
    settings: Any = None,
):
    """Per prompt, how much better ``a`` is than ``b``: score(a) - score(b) for pointwise scorers, the scorer's own
    order-averaged comparison for pairwise ones. Returns ``(gaps, scores_a, scores_b)``; the scores are None for a
    pairwise scorer.

    With ``shard_dir``, pairs are scored ``shard_size`` at a time, each finished shard is written there, and a rerun
    (same ``settings``, i.e. the scorer's config, and the same inputs) scores only the shards that are missing.
    """
    if shard_dir is None:
        return _gaps(scorer, prompts, a, b)
    n = len(prompts)
    keep_only_shards_of(Path(shard_dir), {"scorer": settings, "inputs": fingerprint([prompts, a, b])})
    gaps: list[float] = []
    sa: list[float] = []
    sb: list[float] = []
    for k, lo in enumerate(range(0, n, shard_size)):
        hi = min(n, lo + shard_size)
        shard = Path(shard_dir) / f"shard-{k:05d}.jsonl"
        rows = read_jsonl(shard) if shard.is_file() else []
        if len(rows) != hi - lo:
            g, x, y = _gaps(scorer, prompts[lo:hi], a[lo:hi], b[lo:hi])
            rows = [
                {"gap": g[i], "score_a": None if x is None else x[i], "score_b": None if y is None else y[i]}
                for i in range(hi - lo)
            ]
            write_jsonl(shard, rows)
            log.info("scored %d/%d pairs", hi, n)
        gaps += [r["gap"] for r in rows]
        sa += [r["score_a"] for r in rows]
        sb += [r["score_b"] for r in rows]
    pointwise = not is_pairwise(scorer)
    return gaps, sa if pointwise else None, sb if pointwise else None


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
    if cfg.scorer.name == "judge":
        from synpo.scoring.judge import JudgeScorer

        s = cfg.scorer
        return JudgeScorer(
            s.endpoint,
            s.name_or_path,
            api_key_env=s.api_key_env,
            timeout_s=s.timeout_s,
            max_retries=s.max_retries,
            concurrency=s.concurrency,
            seed=cfg.seed,
        )
    raise UserError(
        f"scorer.name={cfg.scorer.name!r} is not available; choose verifier, reward_model, armorm, pairrm or judge."
    )
