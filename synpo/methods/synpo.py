"""SynPO (arXiv 2410.06961, Algorithm 1): one iteration, stage by stage.

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
7. **pi_0** (not pi_{t-1}) is trained with SimPO on D once per beta; the best on validation becomes pi_t
   (``synpo.methods.selection``).
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from omegaconf import DictConfig

from synpo.artifacts import PAIRS, PROMPTS, StageRecord, file_digest, read_jsonl, sibling, write_jsonl
from synpo.data import corpus_keyword_rows, generator_examples, keyword_function
from synpo.errors import UserError
from synpo.methods.base import Iteration
from synpo.methods.selection import train_and_select
from synpo.prompts import generator_prompt, improver_prompt, parse_question
from synpo.scoring import Comparison
from synpo.stages import Context
from synpo.text import repetition_ratio

PAIR_FIELDS = ("prompt", "chosen", "rejected", "score_chosen", "score_rejected", "gap")


@dataclass
class State:
    generator: str  # the prompt generator G's model directory
    generator_record: StageRecord
    keywords_record: StageRecord
    policy: str  # pi_{t-1}
    policy_record: StageRecord | str  # what pi_{t-1} was built from (a literal for pi_0)
    previous_val: dict = field(default_factory=dict)  # pi_{t-1}'s validation metrics
    pair_records: list[StageRecord] = field(default_factory=list)  # the stages that wrote D's pairs so far


def mean(values: list[float] | None) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def keyword_pool(ctx: Context) -> StageRecord:
    """``keywords.jsonl``: the pool K from which each synthetic prompt's keywords are drawn."""
    out = ctx.rundir.path("keywords.jsonl")
    d = ctx.cfg.data

    def fn():
        if d.keywords == "tinyworld":
            from synpo.tinyworld.tasks import keyword_pool as world_pool

            rows = [{"keywords": [k]} for k in world_pool()]  # single words, drawn 3 at a time
        else:  # 3 keywords per paragraph of a local corpus, drawn together (the paper's keyword lists)
            rows = corpus_keyword_rows(d.keyword_corpus, ctx.seed_for("keywords"))
        return {"n": write_jsonl(out, rows)}

    corpus_file = Path(d.keyword_corpus) if d.keywords == "corpus" and d.keyword_corpus else None
    corpus = file_digest(corpus_file) if corpus_file and corpus_file.is_file() else None
    return ctx.stage("keywords", {"keywords": d.keywords, "corpus": corpus}, [out], fn, [ctx.seed_record])


def keyword_requests(ctx: Context, t: int) -> list[list[str]]:
    """The keyword list of each of the iteration's ``n_prompts`` generator requests."""
    m = ctx.cfg.method
    groups = [r["keywords"] for r in read_jsonl(ctx.rundir.path("keywords.jsonl"))]
    rng = random.Random(ctx.seed_for(ctx.rundir.iter_stage(t, "keywords")))
    k = m.generator_keywords
    if all(len(g) >= k for g in groups):  # one paragraph's keywords per request
        return [rng.choice(groups)[:k] for _ in range(m.n_prompts)]
    pool = [w for g in groups for w in g]  # single-word pool: k distinct words per request
    return [rng.sample(pool, min(k, len(pool))) for _ in range(m.n_prompts)]


def parse_prompts(ctx: Context, raw: Path, out: Path) -> dict:
    """Parsed, valid, deduplicated prompts of ``raw`` into ``out``, and the counts of what was dropped."""
    held_out = {r["prompt"] for r in ctx.seed_val}
    seen: set[str] = set()
    kept, counts = [], {"n_invalid": 0, "n_duplicate": 0, "n_validation_overlap": 0}
    rows = read_jsonl(raw)
    for row in rows:
        question = parse_question(row["response"])
        if question is None or not ctx.scorer.accepts(question):
            counts["n_invalid"] += 1
        elif question in held_out:
            counts["n_validation_overlap"] += 1
        elif question in seen:
            counts["n_duplicate"] += 1
        else:
            seen.add(question)
            kept.append({"prompt": question, "keywords": row["keywords"]})
    write_jsonl(out, kept)
    return {"n_generated": len(rows), **counts, "n_prompts": len(kept)}


def synthetic_prompts(ctx: Context, t: int, state: State) -> tuple[list[str], StageRecord]:
    """Step 1: G's outputs for random keyword lists, parsed into the iteration's prompts."""
    rundir = ctx.rundir
    requests = keyword_requests(ctx, t)
    raw, out = rundir.iter_file(t, "prompts_raw.jsonl"), rundir.iter_file(t, PROMPTS)
    r_raw = ctx.generate(
        rundir.iter_stage(t, "generate_prompts"),
        state.generator,
        [generator_prompt(kw) for kw in requests],
        raw,
        [state.generator_record, state.keywords_record],
        extra=[{"keywords": kw} for kw in requests],
        kind="prompts",
    )
    rec = ctx.stage(
        rundir.iter_stage(t, "prompts"),
        {"scorer": ctx.cfg.scorer.name},
        [out],
        lambda: parse_prompts(ctx, raw, out),
        [r_raw, ctx.seed_record],
    )
    prompts = [r["prompt"] for r in read_jsonl(out)]
    if not prompts:
        raise UserError(
            f"iteration {t}: the prompt generator produced no valid prompt out of {ctx.cfg.method.n_prompts} "
            f"(see {raw}). A prompt must parse from <question>...</question> and be accepted by the scorer; check "
            "that the generator trained (sft_trainer.learning_rate, epochs) or raise method.n_prompts."
        )
    return prompts, rec


def improver(ctx: Context, t: int, state: State) -> tuple[str, StageRecord, dict]:
    """Step 2: the improver R_t, trained from pi_0 on pi_{t-1}'s seed answers -> gold, filtered by the score gap."""
    cfg, rundir = ctx.cfg, ctx.rundir
    seed_prompts = [r["prompt"] for r in ctx.seed_train]
    golds = [r["answer"] for r in ctx.seed_train]
    answers_file = rundir.iter_file(t, "seed_policy.jsonl")
    r_seed = ctx.generate(
        rundir.iter_stage(t, "seed_policy"), state.policy, seed_prompts, answers_file,
        [state.policy_record, ctx.seed_record], kind="seed_policy",
    )  # fmt: skip
    drafts = [r["response"] for r in read_jsonl(answers_file)]
    scores_file = rundir.iter_file(t, "seed_scores.jsonl")
    _, comparison = ctx.compare(
        rundir.iter_stage(t, "seed_scores"), seed_prompts, golds, drafts, scores_file, [r_seed]
    )
    examples = [
        {"prompt": improver_prompt(x, d), "completion": y}
        for x, d, y, gap in zip(seed_prompts, drafts, golds, comparison.gaps, strict=True)
        if not cfg.method.improver_filter or gap > cfg.scorer.threshold
    ]
    if not examples:
        raise UserError(
            f"iteration {t}: the improver has no training example: of {len(drafts)} seed answers of pi_{t - 1}, none "
            f"is worse than its gold answer by more than scorer.threshold={cfg.scorer.threshold} (see "
            f"{scores_file}). Lower scorer.threshold, or set method.improver_filter=false."
        )
    out = rundir.iter_file(t, "improver", "model")
    rec = ctx.train_sft(rundir.iter_stage(t, "improver"), examples, out, [r_seed], cfg.method.improver_max_length)
    info = {
        "improver_examples": len(examples),
        "improver_candidates": len(drafts),
        "seed_policy_score": mean(comparison.scores_b),
    }
    return str(out), rec, info


def responses(ctx: Context, t: int, prompts: list[str], state: State, improver_dir: str, deps: dict) -> dict:
    """Steps 3 and 4: pi_{t-1}'s answers, R_t's rewrites of them (chosen) and pi_0's answers (rejected)."""
    rundir = ctx.rundir
    policy_file = rundir.iter_file(t, "policy.jsonl")
    r_policy = ctx.generate(
        rundir.iter_stage(t, "policy"), state.policy, prompts, policy_file, [state.policy_record, deps["prompts"]],
        kind="policy",
    )  # fmt: skip
    drafts = [r["response"] for r in read_jsonl(policy_file)]
    r_refined = ctx.generate(
        rundir.iter_stage(t, "refined"),
        improver_dir,
        [improver_prompt(x, d) for x, d in zip(prompts, drafts, strict=True)],
        rundir.iter_file(t, "refined.jsonl"),
        [deps["improver"], r_policy],
        kind="refined",
    )
    r_initial = ctx.generate(
        rundir.iter_stage(t, "initial"), ctx.pi0, prompts, rundir.iter_file(t, "initial.jsonl"), [deps["prompts"]],
        kind="initial",
    )  # fmt: skip
    return {"policy": r_policy, "refined": r_refined, "initial": r_initial}


def score_rows(
    ctx: Context, prompts: list[str], t: int, scores_file: Path
) -> tuple[list[dict], Comparison, list | None]:
    """Every candidate pair of iteration t with its scores, gap, repetition and whether the filters keep it; the
    comparison of chosen with rejected; the policy's own scores (None from a scorer that only compares)."""
    rundir, cfg = ctx.rundir, ctx.cfg
    policy = [r["response"] for r in read_jsonl(rundir.iter_file(t, "policy.jsonl"))]
    refined, initial = (
        read_jsonl(rundir.iter_file(t, "refined.jsonl")),
        read_jsonl(rundir.iter_file(t, "initial.jsonl")),
    )
    chosen, rejected = [r["response"] for r in refined], [r["response"] for r in initial]
    cut = ["length" in (a.get("finish_reason"), b.get("finish_reason")) for a, b in zip(refined, initial, strict=True)]
    c = ctx.compare_now(prompts, chosen, rejected, scores_file)
    s_pol = ctx.scorer.scores(prompts, policy)
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
                "score_chosen": c.scores_a[i] if c.scores_a else None,
                "score_rejected": c.scores_b[i] if c.scores_b else None,
                "gap": round(c.gaps[i], 6),
                "repetition": round(rep, 4),
                "truncated": cut[i],
                "kept": c.gaps[i] > cfg.scorer.threshold
                and rep <= cfg.method.max_repetition
                and not (cut[i] and cfg.method.drop_truncated),
            }
        )
    return rows, c, s_pol


def pairs(ctx: Context, t: int, prompts: list[str], deps: dict[str, StageRecord]) -> StageRecord:
    """Step 5 and 6: score every candidate pair, keep those past the filters, add a random sample of them to D."""
    cfg, rundir = ctx.cfg, ctx.rundir
    scores_file, pairs_file = rundir.iter_file(t, "scores.jsonl"), rundir.iter_file(t, PAIRS)

    def fn():
        rows, c, s_pol = score_rows(ctx, prompts, t, scores_file)
        write_jsonl(scores_file, rows)
        shutil.rmtree(sibling(scores_file, "shards"), ignore_errors=True)
        kept = [r for r in rows if r["kept"]]
        rng = random.Random(ctx.seed_for(rundir.iter_stage(t, "pairs")))
        added = rng.sample(kept, min(cfg.method.pairs_per_iteration, len(kept)))
        write_jsonl(pairs_file, [{k: r[k] for k in PAIR_FIELDS} for r in added])
        return {
            "n_candidates": len(rows),
            "n_pairs_kept": len(kept),
            "n_pairs_added": len(added),
            "n_truncated_pairs": sum(r["truncated"] for r in rows),
            "keep_ratio": round(len(kept) / max(1, len(rows)), 6),
            "score_policy": mean(s_pol),
            "score_refined": mean(c.scores_a),
            "score_initial": mean(c.scores_b),
            "mean_gap": mean(c.gaps),
        }

    settings = {
        "threshold": cfg.scorer.threshold,
        "max_repetition": cfg.method.max_repetition,
        "drop_truncated": cfg.method.drop_truncated,
        "n": cfg.method.pairs_per_iteration,
        "scorer": ctx.scorer_settings(),
    }
    return ctx.stage(rundir.iter_stage(t, "pairs"), settings, [scores_file, pairs_file], fn, list(deps.values()))


class SynPO:
    """SynPO as a ``Method``: prepare trains G once; each iteration builds pairs and selects a SimPO model."""

    columns = ("n_prompts", "n_pairs_kept", "keep_ratio", "d_size", "beta")
    trains_sft = True

    def problems(self, cfg: DictConfig) -> list[str]:
        p = []
        if cfg.trainer.loss != "simpo":
            p.append(f"trainer.loss={cfg.trainer.loss!r}: SynPO trains the policy with SimPO; set trainer=simpo")
        if cfg.data.keywords == "corpus" and not cfg.data.keyword_corpus:
            p.append("data.keyword_corpus is null but data.keywords=corpus: give a local text file of paragraphs")
        return p

    def prepare(self, ctx: Context, pi0_val: dict) -> State:
        """Train the prompt generator G once, from pi_0, on the seed set in the keyword template."""
        keywords_of = keyword_function(ctx.cfg.data.keywords)
        examples = generator_examples(ctx.seed_train, keywords_of, ctx.seed_for("generator_examples"))
        if not examples:
            raise UserError(
                f"The prompt generator has no training example: none of the {len(ctx.seed_train)} seed prompts has "
                f"2 keywords (data.keywords={ctx.cfg.data.keywords!r}) or there are fewer than 2 seed rows. Give more "
                "seed data (data.n_train, data.path)."
            )
        out = ctx.rundir.path("generator", "model")
        rec = ctx.train_sft("generator", examples, out, [ctx.seed_record])
        return State(str(out), rec, keyword_pool(ctx), ctx.pi0, "pi_0", dict(pi0_val))

    def iteration(self, ctx: Context, t: int, state: State) -> Iteration:
        prompts, r_prompts = synthetic_prompts(ctx, t, state)
        improver_dir, r_improver, improver_info = improver(ctx, t, state)
        deps = {"prompts": r_prompts, "improver": r_improver}
        r_pairs = pairs(ctx, t, prompts, responses(ctx, t, prompts, state, improver_dir, deps))
        pair_records = [*state.pair_records, r_pairs]
        if not any(r.info.get("n_pairs_added") for r in pair_records):
            i, cfg = r_pairs.info, ctx.cfg
            raise UserError(
                f"iteration {t}: D is empty: of {i['n_candidates']} candidate pairs, {i['n_pairs_kept']} passed the "
                f"filters (scorer.threshold={cfg.scorer.threshold}, method.max_repetition={cfg.method.max_repetition}"
                f"; every pair with its gap is in {ctx.rundir.iter_file(t, 'scores.jsonl')}). Lower scorer.threshold,"
                " or raise method.n_prompts."
            )
        selected = train_and_select(ctx, t, pair_records, state.previous_val, (state.policy, state.policy_record))
        row = {"iteration": t, **selected.row, **r_prompts.info, **r_pairs.info, **improver_info}
        new_state = replace(
            state,
            policy=selected.policy,
            policy_record=selected.record,
            previous_val=selected.val,
            pair_records=pair_records,
        )
        pair_rows = read_jsonl(ctx.rundir.iter_file(t, PAIRS))[: ctx.cfg.logger.n_sample_pairs]
        samples = [{k: p[k] for k in PAIR_FIELDS[:-1]} for p in pair_rows]
        prompts_file = ctx.rundir.iter_file(t, PROMPTS)
        return Iteration(row, new_state, selected.policy, selected.record, samples, prompts_file)
