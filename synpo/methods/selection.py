"""Training one model per beta candidate and keeping the best on validation (SynPO's step 7, and any method that
selects its policy so): SimPO from pi_0 on D (SynPO and its baselines), or DPO from a base against the same base
frozen as the reference (``trainer=dpo``: iterative DPO), whichever ``trainer.loss`` names.

Candidates train one after another, at once on disjoint GPU sets (``launch.concurrent_candidates``), or, on a
machine without a GPU, at once in forked processes of one thread (``launch.cpu_lanes``, ``synpo.training.lanes``);
each is a resumable stage, then each is validated against pi_0's answers, and the best on ``trainer.select_on``
becomes pi_t (``iter_<t>/policy``). An optional guard keeps pi_{t-1} when every candidate validates below it.
"""

from __future__ import annotations

import logging
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from synpo.artifacts import PAIRS, POLICY_LINK, StageRecord, point_link, prune, read_jsonl
from synpo.evaluation.validation import validation_stage
from synpo.stages import Context
from synpo.training.config import beta_candidates, hparams

log = logging.getLogger(__name__)


@dataclass
class Selected:
    row: dict  # beta, per-beta metrics, |D|, whether the guard fired, and the selected model's val_* metrics
    policy: str  # pi_t's model directory
    record: StageRecord | str  # what pi_t was built from
    val: dict  # pi_t's validation metrics


@dataclass(frozen=True)
class Candidate:
    beta: float
    gamma: float | None

    @property
    def name(self) -> str:
        return f"beta_{int(self.beta)}" if float(self.beta).is_integer() else f"beta_{self.beta:g}"


def accumulated_pairs(ctx: Context, t: int) -> list[dict]:
    """D at iteration t: the pairs of iterations 1..t."""
    return [p for s in range(1, t + 1) for p in read_jsonl(ctx.rundir.iter_file(s, PAIRS))]


def candidate_job(run, base: str) -> tuple[str, dict]:
    """The training job kind ``trainer.loss`` names and what it needs beyond the shared arguments: a job with a
    reference (DPO) is given the model it starts from, frozen; SimPO has none."""
    from synpo.training.launch import JOBS

    kind = run.trainer.loss
    return kind, ({"ref_path": base} if JOBS[kind].reference else {})


def train_candidates(
    ctx: Context, t: int, dataset: list[dict], deps: list[StageRecord], base: str | None = None
) -> list[tuple[Candidate, StageRecord]]:
    """One model from ``base`` (default pi_0) on ``dataset`` per beta candidate, trained with ``trainer.loss``, on
    the launch topology's device slots."""
    from synpo.training.launch import slots

    run, rundir = ctx.run, ctx.rundir
    base = base or ctx.pi0
    kind, extra = candidate_job(run, base)
    hp = hparams(run.trainer, run.model, run.launch, ctx.seed_for(rundir.iter_stage(t, kind)), t)
    grid = [Candidate(b, g) for b, g in beta_candidates(run.trainer, t)]
    places = slots(run.launch, len(grid))
    free: queue.Queue = queue.Queue()
    for place in places:
        free.put(place)

    def train(c: Candidate) -> StageRecord:
        model_dir = rundir.iter_file(t, c.name, "model")
        place = free.get()  # held while this candidate trains (a GPU set, a CPU lane, or the only slot)
        settings = {"hp": hp.identity(), "beta": c.beta, "gamma": c.gamma, "from": base}
        job = dict(model_path=base, pairs=dataset, hp=hp, beta=c.beta, trust_remote_code=run.model.trust_remote_code)
        job.update(extra if kind == "dpo" else {"gamma": c.gamma})
        try:
            return ctx.stage(
                rundir.iter_stage(t, c.name, "train"),
                settings if kind == "simpo" else {**settings, "loss": kind, **extra},
                [model_dir],
                lambda: ctx.train(kind, model_dir, slot=place, **job),
                deps,
                kind,
            )
        finally:
            free.put(place)

    with ThreadPoolExecutor(max_workers=len(places)) as pool:
        return list(zip(grid, pool.map(train, grid), strict=True))


def train_and_select(
    ctx: Context,
    t: int,
    pair_records: list[StageRecord],
    previous_val: dict,
    previous: tuple[str, StageRecord | str],
    base: tuple[str, StageRecord | str] | None = None,
    accumulate: bool = True,
) -> Selected:
    """Train every candidate from ``base`` (model directory and record; default pi_0) on D (the pairs of
    iterations 1..t; with ``accumulate=False``, iteration t's alone), validate each, and point ``iter_<t>/policy``
    at the best."""
    rundir = ctx.rundir
    dataset = accumulated_pairs(ctx, t) if accumulate else read_jsonl(rundir.iter_file(t, PAIRS))
    per_beta, records = {}, {}
    deps = [*pair_records, *([base[1]] if base and isinstance(base[1], StageRecord) else [])]
    for c, r_train in train_candidates(ctx, t, dataset, deps, base[0] if base else None):
        model_dir = rundir.iter_file(t, c.name, "model")
        r_eval = validation_stage(
            ctx,
            rundir.iter_stage(t, c.name, "eval"),
            str(model_dir),
            rundir.iter_file(t, c.name),
            [r_train],
            rundir.reference_answers,
        )
        per_beta[c.name] = {
            "beta": c.beta,
            "gamma": c.gamma,
            "from": base[0] if base else "pi_0",
            **r_eval.info,
            "train_loss": r_train.info.get("train_loss"),
        }
        records[c.name] = r_train
    key = ctx.run.trainer.select_on
    best = max(per_beta, key=lambda n: per_beta[n][key])  # first in grid order on ties
    row = {"beta": per_beta[best]["beta"], "per_beta": per_beta, "d_size": len(dataset), "guard_fired": False}
    row.update({k: v for k, v in per_beta[best].items() if k.startswith("val_")})
    target, record = rundir.iter_file(t, best, "model"), records[best]
    if ctx.run.method.keep_previous_if_worse and per_beta[best][key] < previous_val[key]:
        log.warning(
            "iteration %d: every beta candidate validates below pi_%d (%s %.4f < %.4f); keeping pi_%d",
            t,
            t - 1,
            key,
            per_beta[best][key],
            previous_val[key],
            t - 1,
        )
        target, record = Path(previous[0]), previous[1]
        row.update({"guard_fired": True, "beta": None, **previous_val})
    point_link(rundir.iter_file(t, POLICY_LINK), target)
    if not ctx.run.launch.keep_candidates:
        for name in per_beta:
            model_dir = rundir.iter_file(t, name, "model")
            if model_dir != target and model_dir.exists():
                prune(model_dir, f"not selected at iteration {t}; pi_{t} is {target}")
    val = {k: v for k, v in row.items() if k.startswith("val_")}
    return Selected(row, str(target), record, val)
