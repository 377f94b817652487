"""Scorers behind one contract (``synpo.scoring.base``): ``compare(prompts, a, b) -> Comparison``, with pointwise
scores and exactness as optional answers. This package also holds the sharded, resumable comparison that stages use,
and the factory that builds the configured scorer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from synpo.artifacts import fingerprint, keep_only_shards_of, read_jsonl, write_jsonl
from synpo.scoring.base import Comparison, PairwiseScorer, PointwiseScorer, Scorer
from synpo.scoring.config import make_scorer

__all__ = [
    "Comparison",
    "PairwiseScorer",
    "PointwiseScorer",
    "Scorer",
    "compare_in_shards",
    "make_scorer",
    "ranking_scores",
    "values_against",
]

log = logging.getLogger(__name__)


def compare_in_shards(
    scorer: Scorer,
    prompts: list[str],
    a: list[str],
    b: list[str],
    shard_dir: Path,
    shard_size: int = 1024,
    settings: Any = None,
) -> Comparison:
    """``scorer.compare`` over ``shard_size`` pairs at a time, each finished shard written to ``shard_dir``: a rerun
    with the same ``settings`` (the scorer's config) and inputs compares only the shards that are missing."""
    n = len(prompts)
    stamp = {"scorer": settings, "inputs": fingerprint([prompts, a, b]), "shard_size": shard_size}
    keep_only_shards_of(Path(shard_dir), stamp)
    rows: list[dict] = []
    for k, lo in enumerate(range(0, n, shard_size)):
        hi = min(n, lo + shard_size)
        shard = Path(shard_dir) / f"shard-{k:05d}.jsonl"
        done = read_jsonl(shard) if shard.is_file() else []
        if len(done) != hi - lo:
            done = scorer.compare(prompts[lo:hi], a[lo:hi], b[lo:hi]).rows()
            write_jsonl(shard, done)
            log.info("scored %d/%d pairs", hi, n)
        rows += done
    return Comparison.from_rows(rows)


def values_against(scorer: Scorer, prompts: list[str], texts: list[str], references: list[str]) -> list[float]:
    """One number per text for averaging: its pointwise score, or, from a scorer that only compares, its gap
    against the prompt's reference text (PairRM's validation score is its verdict against the gold answer)."""
    scores = scorer.scores(prompts, texts)
    return scores if scores is not None else scorer.compare(prompts, texts, references).gaps


def ranking_scores(scorer: Scorer, prompts: list[str], groups: list[list[str]]) -> list[list[float]]:
    """One number per candidate of each prompt's group, to rank the group: its pointwise score, or, from a scorer that
    only compares, its mean gap against each other candidate of the group (a round robin, as PairRM ranks a list:
    k(k-1)/2 comparisons per prompt, in one ``compare`` call)."""
    flat = [x for x, g in zip(prompts, groups, strict=True) for _ in g]
    scores = scorer.scores(flat, [c for g in groups for c in g])
    if scores is not None:
        out, k = [], 0
        for g in groups:
            out.append(scores[k : k + len(g)])
            k += len(g)
        return out
    pairs = [(n, i, j) for n, g in enumerate(groups) for i in range(len(g)) for j in range(i + 1, len(g))]
    gaps = (
        scorer.compare(
            [prompts[n] for n, _, _ in pairs], [groups[n][i] for n, i, _ in pairs], [groups[n][j] for n, _, j in pairs]
        ).gaps
        if pairs
        else []
    )
    out = [[0.0] * len(g) for g in groups]
    for (n, i, j), gap in zip(pairs, gaps, strict=True):
        out[n][i] += gap / (len(groups[n]) - 1)
        out[n][j] -= gap / (len(groups[n]) - 1)
    return out
