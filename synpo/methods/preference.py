"""What SynPO and the self-improvement baselines share (sampling_ranking, self_rewarding): the state of a method that
accumulates preference pairs in D, the step that filters an iteration's candidate pairs and adds a random sample of
the kept ones to D, and SimPO on D with beta selection (``synpo.methods.selection``).
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from synpo.artifacts import PAIRS, StageRecord, sibling, write_jsonl
from synpo.errors import UserError
from synpo.methods.base import Iteration
from synpo.methods.prompt_sources import PromptSource
from synpo.methods.selection import train_and_select
from synpo.stages import Context

PAIR_FIELDS = ("prompt", "chosen", "rejected", "score_chosen", "score_rejected", "gap")


@dataclass
class State:
    source: PromptSource  # where each iteration's prompts come from
    policy: str  # pi_{t-1}
    policy_record: StageRecord | str  # what pi_{t-1} was built from (a literal for pi_0)
    previous_val: dict = field(default_factory=dict)  # pi_{t-1}'s validation metrics
    pair_records: list[StageRecord] = field(default_factory=list)  # the stages that wrote D's pairs so far
    base: tuple[str, StageRecord | str] | None = None  # what SimPO trains from each iteration; None: pi_0


def mean(values: list[float] | None) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def add_pairs(
    ctx: Context,
    t: int,
    deps: list[StageRecord],
    settings: dict,
    score_rows: Callable[[Path], tuple[list[dict], dict]],
    every_kept: bool = False,
) -> StageRecord:
    """The ``pairs`` stage: ``score_rows(scores_file)`` gives every candidate pair (with ``kept``, and the fields of
    ``PAIR_FIELDS``) and the iteration's statistics; ``method.pairs_per_iteration`` random kept pairs (all of them
    with ``every_kept``) go to ``iter_<t>/pairs.jsonl``, which joins D. Every candidate is in ``scores.jsonl``."""
    run, rundir = ctx.run, ctx.rundir
    limit = None if every_kept else run.method.pairs_per_iteration
    scores_file, pairs_file = rundir.iter_file(t, "scores.jsonl"), rundir.iter_file(t, PAIRS)

    def fn():
        rows, stats = score_rows(scores_file)
        write_jsonl(scores_file, rows)
        shutil.rmtree(sibling(scores_file, "shards"), ignore_errors=True)
        kept = [r for r in rows if r["kept"]]
        rng = random.Random(ctx.seed_for(rundir.iter_stage(t, "pairs")))
        added = kept if limit is None else rng.sample(kept, min(limit, len(kept)))
        write_jsonl(pairs_file, [{k: r.get(k) for k in PAIR_FIELDS} for r in added])
        return {
            "n_candidates": len(rows),
            "n_pairs_kept": len(kept),
            "n_pairs_added": len(added),
            "keep_ratio": round(len(kept) / max(1, len(rows)), 6),
            **stats,
        }

    settings = {"n": limit, "scorer": ctx.scorer_settings(), **settings}
    return ctx.stage(rundir.iter_stage(t, "pairs"), settings, [scores_file, pairs_file], fn, deps)


def select_on_d(
    ctx: Context,
    t: int,
    state: State,
    r_pairs: StageRecord,
    row: dict,
    prompts_file=None,
    gap_rule: str = "",
    accumulate: bool = True,
) -> Iteration:
    """D grows by this iteration's pairs (``accumulate=False``: D is this iteration's pairs alone); the trainer's
    loss from the state's base (pi_0 by default) per beta; the best is pi_t. An empty D stops the run with the
    counts; ``gap_rule`` says what the gap filter was when it is not ``scorer.threshold``."""
    pair_records = [*state.pair_records, r_pairs]
    if not any(r.info.get("n_pairs_added") for r in (pair_records if accumulate else [r_pairs])):
        i, run = r_pairs.info, ctx.run
        rule = gap_rule or f"scorer.threshold={run.scorer.threshold}"
        raise UserError(
            f"iteration {t}: D is empty: of {i['n_candidates']} candidate pairs, {i['n_pairs_kept']} passed the "
            f"filters ({rule}, method.max_repetition={run.method.max_repetition}, method.drop_truncated="
            f"{run.method.drop_truncated}; every candidate pair with its scores is in "
            f"{ctx.rundir.iter_file(t, 'scores.jsonl')}). "
            + ("Lower scorer.threshold, or raise method.n_prompts." if not gap_rule else "Raise method.n_prompts.")
        )
    selected = train_and_select(
        ctx, t, pair_records, state.previous_val, (state.policy, state.policy_record), state.base, accumulate
    )
    new_state = replace(
        state,
        policy=selected.policy,
        policy_record=selected.record,
        previous_val=selected.val,
        pair_records=pair_records,
    )
    full_row = {"iteration": t, **selected.row, **row, **r_pairs.info}
    pairs = r_pairs.output("pairs")
    return Iteration(full_row, new_state, selected.policy, selected.record, prompts_file, pairs, PAIR_FIELDS[:-1])


def pair_filter(
    ctx: Context, gap: float, chosen: str, rejected: str, truncated: bool, threshold: float | None = None
) -> tuple[bool, float]:
    """Whether a candidate pair passes SynPO's filters (gap over the threshold, by default ``scorer.threshold``;
    neither side repetitive; neither cut off when ``method.drop_truncated``), and its repetition."""
    from synpo.text import repetition_ratio

    m = ctx.run.method
    threshold = ctx.run.scorer.threshold if threshold is None else threshold
    rep = max(repetition_ratio(chosen), repetition_ratio(rejected))
    keep = gap > threshold and rep <= m.max_repetition and not (truncated and m.drop_truncated)
    return keep, round(rep, 4)
