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

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from synpo.artifacts import PROMPTS, StageRecord, read_jsonl
from synpo.errors import UserError
from synpo.methods.base import Iteration
from synpo.methods.config import DrawnPromptsConfig
from synpo.methods.preference import State, add_pairs, mean, pair_filter, select_on_d
from synpo.methods.prompt_sources import iteration_prompts, prepare_source, source_problems, template_problems
from synpo.prompts import improver_prompt, template
from synpo.schema import spec
from synpo.stages import Context


@dataclass
class SynPOConfig(DrawnPromptsConfig):
    """SynPO's own fields: the response improver and its data."""

    improver_filter: bool = spec(True, "keep an improver example only if score(y*) - score(draft) > threshold")
    score_drafts: bool = spec(
        True,
        "also score pi_{t-1}'s drafts, for scores.jsonl's score_policy (a second scorer pass over every synthetic "
        "prompt; the paper settings turn it off)",
    )
    improver_template: str | None = spec(
        None, "the improver's request with {question} and {draft}; null: ours (Fig. 7, paraphrased); or file:<path>"
    )
    improver_max_length: int | None = spec(None, "the improver's SFT max length; null: sft_trainer.max_length", gt=0)
    # Options of the content study (LOG 2026-12-06); the paper's choices are the defaults.
    improver_right_drafts: str = spec(
        "filter",
        "a seed answer of pi_{t-1} whose content is right (the scorer's exact; needs one that can tell): filter (the "
        "paper: the gap filter decides, and drops most of them), gold (always an example, the gold answer its "
        "target) or copy (always an example, the draft itself its target: the improver learns to keep what is right)",
        choices=("filter", "gold", "copy"),
    )
    rejected: str = spec(
        "initial",
        "the rejected side of a pair: initial (pi_0's answer, the paper's Fig. 2) or previous (pi_{t-1}'s own "
        "draft, the one the improver rewrote: a pair then says the rewrite beats its draft)",
        choices=("initial", "previous"),
    )
    chosen_content: str = spec(
        "any",
        "the content study's diagnostic: any (the paper) or right (keep a pair only if its chosen answer's content "
        "is right, by the scorer's exact: an oracle only the verifier has, to test whether wrong chosen content is "
        "what SimPO learns)",
        choices=("any", "right"),
    )
    seed_pairs: int = spec(
        0,
        "pairs added to the candidates each iteration from the seed set: the gold answer over pi_{t-1}'s own seed "
        "answer where the gap filter keeps it (pairs that teach content), a random sample of this many; 0: none (the "
        "paper)",
        ge=0,
    )


def improver_examples(ctx: Context, seed_prompts, drafts, golds, gaps) -> list[dict]:
    """The improver's examples: (question, draft) -> gold where the gap filter keeps them; and each right draft
    as ``method.improver_right_drafts`` says."""
    m, threshold = ctx.run.method, ctx.run.scorer.threshold
    right = [False] * len(drafts)
    if m.improver_right_drafts != "filter":
        right = ctx.scorer.exact(seed_prompts, drafts) or right
    text = template("improver_template", m.improver_template)
    out = []
    for x, d, y, gap, ok in zip(seed_prompts, drafts, golds, gaps, right, strict=True):
        if ok:
            out.append(
                {"prompt": improver_prompt(x, d, text), "completion": d if m.improver_right_drafts == "copy" else y}
            )
        elif not m.improver_filter or gap > threshold:
            out.append({"prompt": improver_prompt(x, d, text), "completion": y})
    return out


def improver(ctx: Context, t: int, state: State) -> tuple[str, StageRecord, dict, dict]:
    """Step 2: the improver R_t, trained from pi_0 on pi_{t-1}'s seed answers -> gold, filtered by the score gap;
    its directory and record, the stages of the seed answers and their scores, and the iteration's counts."""
    run, rundir = ctx.run, ctx.rundir
    seed_prompts = [r["prompt"] for r in ctx.seed_train]
    golds = [r["answer"] for r in ctx.seed_train]
    answers_file = rundir.iter_file(t, "seed_policy.jsonl")
    r_seed = ctx.generate(
        rundir.iter_stage(t, "seed_policy"),
        state.policy,
        seed_prompts,
        answers_file,
        [state.policy_record, ctx.seed_record],
        kind="seed_policy",
    )
    drafts = [r["response"] for r in read_jsonl(r_seed.output("seed_policy"))]
    scores_file = rundir.iter_file(t, "seed_scores.jsonl")
    r_scores, comparison = ctx.compare(
        rundir.iter_stage(t, "seed_scores"), seed_prompts, golds, drafts, scores_file, [r_seed]
    )

    examples = improver_examples(ctx, seed_prompts, drafts, golds, comparison.gaps)
    if not examples:
        raise UserError(
            f"iteration {t}: the improver has no training example: of {len(drafts)} seed answers of pi_{t - 1}, none "
            f"is worse than its gold answer by more than scorer.threshold={run.scorer.threshold} (see "
            f"{scores_file}). Lower scorer.threshold, or set method.improver_filter=false."
        )
    out = rundir.iter_file(t, "improver", "model")
    rec = ctx.train_sft(rundir.iter_stage(t, "improver"), examples, out, [r_seed], run.method.improver_max_length)
    info = {
        "improver_examples": len(examples),
        "improver_candidates": len(drafts),
        "seed_policy_score": mean(comparison.scores_b),
    }
    return str(out), rec, {"seed_policy": r_seed, "seed_scores": r_scores}, info


def drafts(ctx: Context, t: int, prompts: list[str], state: State, r_prompts: StageRecord) -> dict:
    """Steps 3 and 4, the untrained half: pi_0's answers (rejected) and pi_{t-1}'s (the drafts R_t rewrites). Both
    come before the improver's training, pi_{t-1} last, so that its seed answers (``improver``) reuse the loaded
    model; in iteration 1, pi_{t-1} is pi_0 and all three stages load one checkpoint."""
    rundir = ctx.rundir
    r_initial = ctx.generate(
        rundir.iter_stage(t, "initial"),
        ctx.pi0,
        prompts,
        rundir.iter_file(t, "initial.jsonl"),
        [r_prompts],
        kind="initial",
    )
    r_policy = ctx.generate(
        rundir.iter_stage(t, "policy"),
        state.policy,
        prompts,
        rundir.iter_file(t, "policy.jsonl"),
        [state.policy_record, r_prompts],
        kind="policy",
    )
    return {"policy": r_policy, "initial": r_initial}


def rewrites(ctx: Context, t: int, prompts: list[str], improver_dir: str, r_improver, r_policy) -> StageRecord:
    """Step 3, the chosen side: R_t's rewrites of pi_{t-1}'s answers."""
    rundir = ctx.rundir
    texts = [r["response"] for r in read_jsonl(r_policy.output("policy"))]
    text = template("improver_template", ctx.run.method.improver_template)
    return ctx.generate(
        rundir.iter_stage(t, "refined"),
        improver_dir,
        [improver_prompt(x, d, text) for x, d in zip(prompts, texts, strict=True)],
        rundir.iter_file(t, "refined.jsonl"),
        [r_improver, r_policy],
        kind="refined",
    )


def score_rows(
    ctx: Context, prompts: list[str], deps: dict[str, StageRecord], scores_file: Path
) -> tuple[list[dict], dict]:
    """Every candidate pair of an iteration (``deps``: the stages that wrote its policy, refined and initial
    answers) with its scores, gap, repetition and whether the filters keep it; the iteration's mean scores (the
    policy's are None from a scorer that only compares)."""
    drafts = read_jsonl(deps["policy"].output("policy"))
    policy = [r["response"] for r in drafts]
    refined = read_jsonl(deps["refined"].output("refined"))
    other = drafts if ctx.run.method.rejected == "previous" else read_jsonl(deps["initial"].output("initial"))
    chosen, rejected = [r["response"] for r in refined], [r["response"] for r in other]
    cut = ["length" in (a.get("finish_reason"), b.get("finish_reason")) for a, b in zip(refined, other, strict=True)]
    c = ctx.compare_now(prompts, chosen, rejected, scores_file)
    # pi_{t-1}'s own drafts are scored only to be read beside the pairs (how often the rewrite beats its draft):
    # a second pass of the scorer over every synthetic prompt, so at scale it is an option
    s_pol = ctx.scorer.scores(prompts, policy) if ctx.run.method.score_drafts else None
    right = ctx.scorer.exact(prompts, chosen) if ctx.run.method.chosen_content == "right" else None
    rows = seed_pair_rows(ctx, deps) if ctx.run.method.seed_pairs else []
    for i, x in enumerate(prompts):
        kept, rep = pair_filter(ctx, c.gaps[i], chosen[i], rejected[i], cut[i])
        kept = kept and (right is None or right[i])
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
                "repetition": rep,
                "truncated": cut[i],
                "kept": kept,
            }
        )
    stats = {
        "n_truncated_pairs": sum(cut),
        "score_policy": mean(s_pol),
        "score_refined": mean(c.scores_a),
        "score_initial": mean(c.scores_b),
        "mean_gap": mean(c.gaps),
    }
    return rows, stats


def seed_pair_rows(ctx: Context, deps: dict[str, StageRecord]) -> list[dict]:
    """``method.seed_pairs`` candidate rows from the seed set: gold over pi_{t-1}'s seed answer, where the filters
    keep the pair, a random sample (the pairs stage's seed); marked ``"seed": true`` in scores.jsonl."""
    import random

    drafts = read_jsonl(deps["seed_policy"].output("seed_policy"))
    gaps = [r["gap"] for r in read_jsonl(deps["seed_scores"].output("seed_scores"))]
    rows = []
    for s, d, gap in zip(ctx.seed_train, drafts, gaps, strict=True):
        kept, rep = pair_filter(ctx, gap, s["answer"], d["response"], d.get("finish_reason") == "length")
        if kept:
            row = {"prompt": s["prompt"], "policy": d["response"], "chosen": s["answer"], "rejected": d["response"]}
            rows.append({**row, "gap": round(gap, 6), "repetition": rep, "kept": True, "seed": True})
    rng = random.Random(ctx.seed_for(deps["seed_scores"].name + "/seed_pairs"))
    return rng.sample(rows, min(ctx.run.method.seed_pairs, len(rows)))


def pairs(ctx: Context, t: int, prompts: list[str], deps: dict[str, StageRecord]) -> StageRecord:
    """Steps 5 and 6: score every candidate pair, keep those past the filters, add a random sample of them to D."""
    m = ctx.run.method
    settings = {
        "threshold": ctx.run.scorer.threshold,
        "max_repetition": m.max_repetition,
        "drop_truncated": m.drop_truncated,
        **({"rejected": m.rejected} if m.rejected != "initial" else {}),  # the paper's pairs keep their identity
        **({"chosen_content": m.chosen_content} if m.chosen_content != "any" else {}),
        **({"seed_pairs": m.seed_pairs} if m.seed_pairs else {}),
    }
    return add_pairs(ctx, t, list(deps.values()), settings, lambda out: score_rows(ctx, prompts, deps, out))


class SynPO:
    """SynPO as a ``Method``: prepare trains G once; each iteration builds pairs and selects a SimPO model."""

    schema = SynPOConfig
    columns = ("n_prompts", "n_pairs_kept", "keep_ratio", "d_size", "beta")
    trainer = "simpo"
    trains_sft = True
    draws_prompts = True

    def problems(self, cfg: DictConfig) -> list[str]:
        from synpo.scoring.config import SCORERS

        p = source_problems(cfg) + template_problems(cfg, "improver_template")
        scorer = SCORERS.entries.get(cfg.scorer.name)
        m = cfg.method
        for key, paper in (("improver_right_drafts", "filter"), ("chosen_content", "any")):
            if m[key] != paper and scorer is not None and not scorer.knows_exact:
                p.append(
                    f"method.{key}={m[key]!r} needs a scorer that tells right content (the verifier); "
                    f"scorer.name={cfg.scorer.name!r} cannot: set method.{key}={paper}"
                )
        return p

    def workload(self, cfg: DictConfig, t: int, a, policy: dict, scorer: dict, pairwise: bool) -> list:
        """Iteration t's stages for the plan (``synpo.plan``), in ``synpo.cost``'s units."""
        from synpo.cost import generate, score, train, validation
        from synpo.training.config import beta_candidates
        from synpo.training.launch import JOBS

        m, new = cfg.method, cfg.generator.max_new_tokens
        p, answer, gold, n_seed = a.prompt_tokens, a.answer_fill * new, a.gold_tokens, cfg.data.n_train
        valid = m.n_prompts * a.valid_share
        question = p - a.template_tokens  # a prompt's own text; a request, the improver's prompt render it once
        question_fill = min(1.0, (question + a.tag_tokens / 2) / new) if m.generator_stop else a.request_fill
        improver_prompt = question + answer + a.improver_overhead  # the overhead: both templates, measured together
        # the improver learns to write the seed set's reference answers, so its rewrites (each pair's chosen answer)
        # are sized like those, not like the policy's drafts (SmolLM2: 15 tokens against drafts of 43, gold 12)
        rewrite_fill = min(1.0, gold / new)
        pair_answer = (gold + answer) / 2  # chosen: a rewrite; rejected: pi_0's answer
        d_size = t * min(m.pairs_per_iteration * a.pair_keep, valid)
        candidates = len(beta_candidates(cfg.trainer, t))
        works, epochs = [], cfg.sft_trainer.epochs
        sft_ckpt, ckpt = cfg.sft_trainer.gradient_checkpointing, cfg.trainer.gradient_checkpointing
        if t == 1 and m.prompt_source == "generator":  # trained once, before iteration 1
            works.append(
                # a request, then its target: <question>x</question> <solution>y</solution>
                train(
                    "generator SFT",
                    policy,
                    n_seed,
                    a.request_tokens + question + gold + a.tag_tokens,
                    epochs,
                    a,
                    sft_ckpt,
                )
            )
        works += [
            # with method.generator_stop the generator writes a question (a prompt's text), not its solution too
            generate("synthetic prompts", policy, m.n_prompts, a.request_tokens, new, a, question_fill),
            generate("pi_0 and pi_{t-1} answers", policy, 2 * valid, p, new, a),
            generate("pi_{t-1} seed answers", policy, n_seed, p, new, a),
            score("seed scores", scorer, n_seed, p, (gold + answer) / 2, a, pairwise),
            train("improver SFT", policy, n_seed * a.improver_keep, improver_prompt + gold, epochs, a, sft_ckpt),
            generate("improver rewrites", policy, valid, improver_prompt, new, a, rewrite_fill),
            score("pair scores", scorer, valid, p, pair_answer, a, pairwise),
            train(
                f"{cfg.trainer.loss.upper() if cfg.trainer.loss != 'simpo' else 'SimPO'} x {candidates} betas",
                policy,
                2 * d_size * candidates,
                min(p + pair_answer, cfg.trainer.max_length),  # a longer answer is cut at the trainer's max_length
                cfg.trainer.epochs,
                a,
                ckpt,
                reference=JOBS[cfg.trainer.loss].reference,
                models=candidates,
            ),
        ]
        return works + validation(cfg, policy, scorer, a, candidates, pairwise)

    def prepare(self, ctx: Context, pi0_val: dict) -> State:
        """The prompt source (SynPO's own: train the prompt generator G once, from pi_0, on the seed set)."""
        return State(prepare_source(ctx), ctx.pi0, "pi_0", dict(pi0_val))

    def iteration(self, ctx: Context, t: int, state: State) -> Iteration:
        prompts, r_prompts = iteration_prompts(ctx, t, state.source, state.policy, state.policy_record)
        answers = drafts(ctx, t, prompts, state, r_prompts)
        improver_dir, r_improver, seed_records, improver_info = improver(ctx, t, state)
        r_refined = rewrites(ctx, t, prompts, improver_dir, r_improver, answers["policy"])
        deps = {"policy": answers["policy"], "refined": r_refined, "initial": answers["initial"]}
        if ctx.run.method.seed_pairs:
            deps.update(seed_records)
        r_pairs = pairs(ctx, t, prompts, deps)
        row = {**r_prompts.info, **improver_info}
        return select_on_d(ctx, t, state, r_pairs, row, ctx.rundir.iter_file(t, PROMPTS))


METHODS = {"synpo": SynPO()}
