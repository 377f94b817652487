"""SynPO (arXiv 2410.06961, Algorithm 1): one iteration, stage by stage (DESIGN section 6).

Per iteration t, with pi_0 the SFT model and pi_{t-1} the current policy:

1. sample synthetic prompts from the prompt generator G (3 random keywords each, temperature 0.7); parse
   ``<question>``, drop invalid ones and duplicates (and, beyond the paper, any that equal a validation prompt, so
   the validation set never leaks into D);
2. pi_{t-1} answers the seed prompts; the improver R_t is trained **from pi_0** on (x*, answer) -> y*, keeping an
   example only if score(y*) - score(answer) > threshold;
3. pi_{t-1} answers the synthetic prompts and R_t rewrites each answer: the rewrite is *chosen*;
4. pi_0 answers the same prompts: that answer is *rejected*;
5. a pair is kept if score(chosen) - score(rejected) > threshold and neither side is over 50% repetition;
6. ``pairs_per_iteration`` random kept pairs join D, which accumulates over iterations;
7. **pi_0** (not pi_{t-1}) is trained with SimPO on D once per beta; the best on validation becomes pi_t.
"""

from __future__ import annotations

import logging
import queue
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from synpo.artifacts import StageRecord, file_digest, point_link, read_jsonl, write_jsonl
from synpo.config import betas, gamma_for, hparams
from synpo.data import corpus_keyword_rows, generator_examples, keyword_function, repetition_ratio
from synpo.pipeline import Context, stage_seed
from synpo.prompts import generator_prompt, improver_prompt, parse_question
from synpo.scoring import is_pairwise

log = logging.getLogger(__name__)

COLUMNS = ("n_prompts", "n_pairs_kept", "keep_ratio", "d_size", "beta")


@dataclass
class State:
    generator: str  # the prompt generator G's model directory
    generator_record: StageRecord
    keywords_record: StageRecord
    policy: str  # pi_{t-1}
    policy_record: StageRecord | str  # what pi_{t-1} was built from (a literal for pi_0)
    previous_val: dict = field(default_factory=dict)  # pi_{t-1}'s validation metrics
    pair_records: list[StageRecord] = field(default_factory=list)


def keyword_pool(ctx: Context) -> StageRecord:
    """``keywords.jsonl``: the pool K from which each synthetic prompt's keywords are drawn."""
    out = ctx.run.path("keywords.jsonl")

    d = ctx.cfg.data

    def fn():
        if d.keywords == "tinyworld":
            from synpo.tinyworld.tasks import keyword_pool as world_pool

            rows = [{"keywords": [k]} for k in world_pool()]  # single words, drawn 3 at a time
        else:  # 3 keywords per paragraph of a local corpus, drawn together (the paper's keyword lists)
            rows = corpus_keyword_rows(d.keyword_corpus, stage_seed(ctx.cfg.seed, "keywords"))
        return {"n": write_jsonl(out, rows)}

    corpus_file = Path(d.keyword_corpus) if d.keywords == "corpus" and d.keyword_corpus else None
    corpus = file_digest(corpus_file) if corpus_file and corpus_file.is_file() else None
    return ctx.run.stage("keywords", {"keywords": d.keywords, "corpus": corpus}, [out], fn, [ctx.seed_record])


def prepare(ctx: Context, pi0_val: dict) -> State:
    """Train the prompt generator G once, from pi_0, on the seed set in the keyword template."""
    examples = generator_examples(
        ctx.seed_train, keyword_function(ctx.cfg.data.keywords), stage_seed(ctx.cfg.seed, "generator_examples")
    )
    out = ctx.run.path("generator", "model")
    rec = ctx.record("generator", ctx.train_sft("generator", examples, out, [ctx.seed_record]))
    return State(str(out), rec, keyword_pool(ctx), ctx.pi0, "pi_0", dict(pi0_val))


def _synthetic_prompts(ctx: Context, t: int, state: State) -> tuple[list[str], StageRecord]:
    cfg, run = ctx.cfg, ctx.run
    it = f"iter_{t}"
    groups = [r["keywords"] for r in read_jsonl(run.path("keywords.jsonl"))]
    rng = random.Random(stage_seed(cfg.seed, f"{it}/keywords"))
    k = cfg.method.generator_keywords
    if all(len(g) >= k for g in groups):  # one paragraph's keywords per request
        requests = [rng.choice(groups)[:k] for _ in range(cfg.method.n_prompts)]
    else:  # single-word pool: k distinct words per request
        pool = [w for g in groups for w in g]
        requests = [rng.sample(pool, min(k, len(pool))) for _ in range(cfg.method.n_prompts)]
    raw = run.path(it, "prompts_raw.jsonl")
    r_raw = ctx.record(
        "prompts",
        ctx.generate(
            f"{it}/generate_prompts",
            state.generator,
            [generator_prompt(kw) for kw in requests],
            raw,
            [state.generator_record, state.keywords_record],
            extra=[{"keywords": kw} for kw in requests],
        ),
    )
    out = run.path(it, "prompts.jsonl")

    def fn():
        held_out = {r["prompt"] for r in ctx.seed_val}
        seen: set[str] = set()
        kept, invalid, duplicate, leaked = [], 0, 0, 0
        for row in read_jsonl(raw):
            question = parse_question(row["response"])
            if question is None or not ctx.scorer.accepts(question):
                invalid += 1
            elif question in held_out:
                leaked += 1
            elif question in seen:
                duplicate += 1
            else:
                seen.add(question)
                kept.append({"prompt": question, "keywords": row["keywords"]})
        write_jsonl(out, kept)
        return {
            "n_generated": len(requests),
            "n_invalid": invalid,
            "n_duplicate": duplicate,
            "n_validation_overlap": leaked,
            "n_prompts": len(kept),
        }

    rec = run.stage(f"{it}/prompts", {"scorer": cfg.scorer.name}, [out], fn, [r_raw, ctx.seed_record])
    return [r["prompt"] for r in read_jsonl(out)], rec


def _improver(ctx: Context, t: int, state: State) -> tuple[str, StageRecord, dict]:
    cfg, run = ctx.cfg, ctx.run
    it = f"iter_{t}"
    seed_prompts = [r["prompt"] for r in ctx.seed_train]
    answers_file = run.path(it, "seed_policy.jsonl")
    r_seed = ctx.record(
        "seed_policy",
        ctx.generate(
            f"{it}/seed_policy", state.policy, seed_prompts, answers_file, [state.policy_record, ctx.seed_record]
        ),
    )
    drafts = [r["response"] for r in read_jsonl(answers_file)]
    golds = [r["answer"] for r in ctx.seed_train]
    scores_file = run.path(it, "seed_scores.jsonl")
    ctx.record("scores", ctx.score_pairs(f"{it}/seed_scores", seed_prompts, golds, drafts, scores_file, [r_seed]))
    gaps, _, draft_scores = ctx.read_scores(scores_file)
    examples = [
        {"prompt": improver_prompt(x, d), "completion": y}
        for x, d, y, gap in zip(seed_prompts, drafts, golds, gaps, strict=True)
        if not cfg.method.improver_filter or gap > cfg.scorer.threshold
    ]
    out = run.path(it, "improver", "model")
    rec = ctx.record(
        "improver", ctx.train_sft(f"{it}/improver", examples, out, [r_seed], cfg.method.improver_max_length)
    )
    info = {
        "improver_examples": len(examples),
        "improver_candidates": len(drafts),
        "seed_policy_score": _mean(draft_scores),
    }
    return str(out), rec, info


def _pairs(ctx: Context, t: int, prompts: list[str], deps: dict[str, StageRecord]) -> StageRecord:
    cfg, run = ctx.cfg, ctx.run
    it = f"iter_{t}"
    scores_file, pairs_file = run.path(it, "scores.jsonl"), run.path(it, "pairs.jsonl")

    def fn():
        policy = [r["response"] for r in read_jsonl(run.path(it, "policy.jsonl"))]
        chosen = [r["response"] for r in read_jsonl(run.path(it, "refined.jsonl"))]
        rejected = [r["response"] for r in read_jsonl(run.path(it, "initial.jsonl"))]
        shard_dir = scores_file.with_name(scores_file.name + ".shards")
        gaps, s_ch, s_rej = ctx.gaps(prompts, chosen, rejected, shard_dir)
        s_pol = None if is_pairwise(ctx.scorer) else ctx.scorer.score(prompts, policy)
        rows = []
        for i, x in enumerate(prompts):
            rep = max(repetition_ratio(chosen[i]), repetition_ratio(rejected[i]))
            rows.append(
                {
                    "prompt": x,
                    "policy": policy[i],
                    "chosen": chosen[i],
                    "rejected": rejected[i],
                    "score_policy": s_pol[i] if s_pol else None,
                    "score_chosen": s_ch[i] if s_ch else None,
                    "score_rejected": s_rej[i] if s_rej else None,
                    "gap": round(gaps[i], 6),
                    "repetition": round(rep, 4),
                    "kept": gaps[i] > cfg.scorer.threshold and rep <= cfg.method.max_repetition,
                }
            )
        write_jsonl(scores_file, rows)
        shutil.rmtree(shard_dir, ignore_errors=True)
        kept = [r for r in rows if r["kept"]]
        rng = random.Random(stage_seed(cfg.seed, f"{it}/pairs"))
        added = rng.sample(kept, min(cfg.method.pairs_per_iteration, len(kept)))
        write_jsonl(
            pairs_file,
            [
                {k: r[k] for k in ("prompt", "chosen", "rejected", "score_chosen", "score_rejected", "gap")}
                for r in added
            ],
        )
        n = max(1, len(rows))
        return {
            "n_candidates": len(rows),
            "n_pairs_kept": len(kept),
            "n_pairs_added": len(added),
            "keep_ratio": round(len(kept) / n, 6),
            "score_policy": _mean(s_pol),
            "score_refined": _mean(s_ch),
            "score_initial": _mean(s_rej),
            "mean_gap": _mean(gaps),
        }

    settings = {
        "threshold": cfg.scorer.threshold,
        "max_repetition": cfg.method.max_repetition,
        "n": cfg.method.pairs_per_iteration,
        "scorer": ctx.scorer_settings(),
    }
    return ctx.record("pairs", run.stage(f"{it}/pairs", settings, [scores_file, pairs_file], fn, list(deps.values())))


def _mean(values: list[float] | None) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def _beta_name(beta: float) -> str:
    return f"beta_{int(beta)}" if float(beta).is_integer() else f"beta_{beta:g}"


def _train_and_select(ctx: Context, t: int, state: State, pair_records: list[StageRecord]) -> tuple[dict, State]:
    from synpo.training.launch import device_slots, run_training_job

    cfg, run = ctx.cfg, ctx.run
    it = f"iter_{t}"
    dataset = [p for s in range(1, t + 1) for p in read_jsonl(run.path(f"iter_{s}", "pairs.jsonl"))]
    reference = run.path("iter_0", "val_answers.jsonl")
    hp = hparams(cfg.trainer, cfg.model, stage_seed(cfg.seed, f"{it}/simpo"))
    grid = [(beta, _beta_name(beta), gamma_for(cfg, beta)) for beta in betas(cfg)]
    slots = device_slots(cfg.trainer, len(grid))
    free: queue.Queue = queue.Queue()
    for i, devices in enumerate(slots):
        free.put((i, devices))

    def train(candidate) -> StageRecord:
        beta, name, gamma = candidate
        model_dir = run.path(it, name, "model")
        slot, devices = free.get()  # a disjoint GPU set, held while this candidate trains
        try:
            return run.stage(
                f"{it}/{name}/train",
                {"hp": hp.__dict__, "beta": beta, "gamma": gamma, "from": ctx.pi0},
                [model_dir],
                lambda: run_training_job(
                    "simpo",
                    model_dir,
                    cfg.trainer,
                    devices=devices,
                    slot=slot,
                    model_path=ctx.pi0,
                    pairs=dataset,
                    hp=hp,
                    beta=beta,
                    gamma=gamma,
                    trust_remote_code=cfg.model.trust_remote_code,
                ),
                pair_records,
            )
        finally:
            free.put((slot, devices))

    if len(slots) > 1:
        log.info("iteration %d: %d beta candidates on %d disjoint GPU sets %s", t, len(grid), len(slots), slots)
    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        trained = list(pool.map(train, grid))
    per_beta, records = {}, {}
    for (beta, name, gamma), r_train in zip(grid, trained, strict=True):
        ctx.record("simpo", r_train)
        model_dir = run.path(it, name, "model")
        r_eval = ctx.record(
            "eval", ctx.evaluate(f"{it}/{name}/eval", str(model_dir), run.path(it, name), [r_train], reference)
        )
        per_beta[name] = {"beta": beta, "gamma": gamma, **r_eval.info, "train_loss": r_train.info.get("train_loss")}
        records[name] = r_train
    key = cfg.trainer.select_on
    best = max(per_beta, key=lambda n: per_beta[n][key])  # first in grid order on ties
    row = {"beta": per_beta[best]["beta"], "per_beta": per_beta, "d_size": len(dataset), "guard_fired": False}
    row.update({k: v for k, v in per_beta[best].items() if k.startswith("val_")})
    policy_link = run.path(it, "policy")
    target, record = run.path(it, best, "model"), records[best]
    if cfg.method.keep_previous_if_worse and per_beta[best][key] < state.previous_val[key]:
        log.warning(
            "iteration %d: every beta candidate validates below pi_%d (%s %.4f < %.4f); keeping pi_%d",
            t,
            t - 1,
            key,
            per_beta[best][key],
            state.previous_val[key],
            t - 1,
        )
        target, record = Path(state.policy), state.policy_record
        row.update({"guard_fired": True, "beta": None, **state.previous_val})
    point_link(policy_link, target)
    val = {k: v for k, v in row.items() if k.startswith("val_")}
    new_state = State(
        state.generator, state.generator_record, state.keywords_record, str(target), record, val, pair_records
    )
    return row, new_state


def iteration(ctx: Context, t: int, state: State) -> tuple[dict, State, list[dict]]:
    cfg, run = ctx.cfg, ctx.run
    it = f"iter_{t}"
    prompts, r_prompts = _synthetic_prompts(ctx, t, state)
    if not prompts:
        raise RuntimeError(
            f"iteration {t}: the prompt generator produced no valid prompt out of "
            f"{cfg.method.n_prompts}; see {run.path(it, 'prompts_raw.jsonl')}"
        )
    improver, r_improver, improver_info = _improver(ctx, t, state)
    r_policy = ctx.record(
        "policy",
        ctx.generate(
            f"{it}/policy", state.policy, prompts, run.path(it, "policy.jsonl"), [state.policy_record, r_prompts]
        ),
    )
    drafts = [r["response"] for r in read_jsonl(run.path(it, "policy.jsonl"))]
    r_refined = ctx.record(
        "refined",
        ctx.generate(
            f"{it}/refined",
            improver,
            [improver_prompt(x, d) for x, d in zip(prompts, drafts, strict=True)],
            run.path(it, "refined.jsonl"),
            [r_improver, r_policy],
        ),
    )
    r_initial = ctx.record(
        "initial", ctx.generate(f"{it}/initial", ctx.pi0, prompts, run.path(it, "initial.jsonl"), [r_prompts])
    )
    r_pairs = _pairs(ctx, t, prompts, {"policy": r_policy, "refined": r_refined, "initial": r_initial})
    pair_records = [*state.pair_records, r_pairs]
    row, new_state = _train_and_select(ctx, t, state, pair_records)
    row = {"iteration": t, **row, **r_prompts.info, **r_pairs.info, **improver_info}
    samples = [
        {k: p[k] for k in ("prompt", "chosen", "rejected", "score_chosen", "score_rejected")}
        for p in read_jsonl(run.path(it, "pairs.jsonl"))[: cfg.logger.n_sample_pairs]
    ]
    return row, new_state, samples
