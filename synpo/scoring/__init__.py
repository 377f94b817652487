"""Scorers behind one contract (``synpo.scoring.base``): ``compare(prompts, a, b) -> Comparison``, with pointwise
scores and exactness as optional answers. This package also holds the sharded, resumable comparison that stages use,
and the factory that builds the configured scorer."""

from __future__ import annotations

import copy
import logging
from concurrent.futures import ThreadPoolExecutor
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
    replicas: int = 1,
) -> Comparison:
    """``scorer.compare`` over ``shard_size`` pairs at a time, each finished shard written to ``shard_dir``: a rerun
    with the same ``settings`` (the scorer's config) and inputs compares only the shards that are missing. With
    ``replicas`` > 1 the missing shards are shared between copies of the scorer's model on accelerators 0, 1, ...
    (every ``replicas``-th shard each, in threads: the kernels run while Python waits), for the same rows."""
    n = len(prompts)
    stamp = {"scorer": settings, "inputs": fingerprint([prompts, a, b]), "shard_size": shard_size}
    keep_only_shards_of(Path(shard_dir), stamp)
    shards = [
        (Path(shard_dir) / f"shard-{k:05d}.jsonl", lo, min(n, lo + shard_size))
        for k, lo in enumerate(range(0, n, shard_size))
    ]
    done = {shard: read_jsonl(shard) for shard, _, _ in shards if shard.is_file()}  # each file read once
    todo = [s for s in shards if len(done.get(s[0], ())) != s[2] - s[1]]

    def work(one: Scorer, mine: list) -> None:
        for shard, lo, hi in mine:
            done[shard] = one.compare(prompts[lo:hi], a[lo:hi], b[lo:hi]).rows()
            write_jsonl(shard, done[shard])
            log.info("scored pairs %d-%d of %d", lo, hi, n)

    copies = scorer_replicas(scorer, min(replicas, len(todo))) if todo else [scorer]
    try:
        with ThreadPoolExecutor(len(copies)) as pool:
            list(pool.map(work, copies, [todo[j :: len(copies)] for j in range(len(copies))]))
    finally:
        for one in copies[1:]:
            one.held.drop()
    return Comparison.from_rows([row for shard, _, _ in shards for row in done[shard]])


def scorer_replicas(scorer: Scorer, n: int) -> list[Scorer]:
    """``n`` scorers that share everything but the model's placement: replica k scores on accelerator k (a scorer
    without a model of its own, such as the verifier or a judge endpoint, is its own replicas)."""
    held = getattr(scorer, "held", None)
    if n <= 1 or held is None:
        return [scorer]
    copies = [scorer]  # the copies are made before the scorer takes GPU 0, from host memory when it is there
    for k in range(1, n):
        one = copy.copy(scorer)
        one.held = held.replica(k)
        for name, value in vars(scorer).items():  # a fast tokenizer must not serve two threads at once
            if hasattr(value, "backend_tokenizer"):
                setattr(one, name, copy.deepcopy(value))
        copies.append(one)
    return copies


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
