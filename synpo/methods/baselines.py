"""The paper's self-improvement baselines (Table 2), on SynPO's pipeline: the same prompt source
(``method.prompt_source``, SynPO's generator by default, so that only the way pairs are made differs), the same
filters, the same accumulation of D and the same trainer, SimPO from pi_0 over the beta grid with selection on
validation (``synpo.methods.preference``).

- ``sampling_ranking``: pi_{t-1} samples ``samples_per_prompt`` answers per prompt in one generation call; the scorer
  ranks them (pointwise scores, or a round robin of comparisons for PairRM); the best is chosen, the worst
  rejected, and the pair is kept when the scorer's own comparison of the two is over ``scorer.threshold``.
- ``self_rewarding`` (Yuan et al. 2024): pi_{t-1} samples the answers and judges each itself, as an LLM-as-a-judge
  through the same generator (``method.judge_template``: the additive 5-point rubric, or a short form for small
  contexts); scores are read with a bounded regular expression, never evaluated, and an unreadable judgement is
  counted and left out. The highest- against the lowest-scored answer is a pair when their scores differ. The
  judge's skill comes from evaluation fine-tuning (EFT) when ``method.judge_data`` is given: pi_0 is fine-tuned once
  on judge examples and that model, M_1, is what every iteration's SimPO starts from. Yuan et al.'s M_1 is SFT on
  instruction *and* EFT data; pi_0 is already the instruction-tuned model here, and SFT on the seed answers is
  Table 7's own ablation (``seed_sft``), so M_1's instruction part is pi_0's own answers to the seed prompts
  (replay: it keeps how pi_0 answers while it learns to judge). The scorer is not used to make the pairs; it is used
  once per pair afterwards to measure how often the self-judge agrees with it (``judge_agreement``).

Preference loss: SimPO for both (with SynPO's beta grid and selection), not the DPO that Yuan et al. iterate with,
so that Table 2's rows differ only in their data; ``trainer=dpo`` is refused for them as for SynPO.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from synpo.artifacts import PROMPTS, read_jsonl
from synpo.data import load_text_rows, world_or_file_problem
from synpo.methods.base import Iteration
from synpo.methods.config import DrawnPromptsConfig
from synpo.methods.preference import State, add_pairs, mean, pair_filter, select_on_d
from synpo.methods.prompt_sources import iteration_prompts, prepare_source, source_problems, template_problems
from synpo.prompts import judge_prompt, judge_target, parse_judge_score, template
from synpo.schema import spec
from synpo.scoring import ranking_scores
from synpo.stages import Context
from synpo.worlds import world


@dataclass
class BestOfKConfig(DrawnPromptsConfig):
    """A method that samples several answers of pi_{t-1} per prompt and pairs the best with the worst."""

    samples_per_prompt: int = spec(5, "answers pi_{t-1} samples per prompt, in one generation call (paper: 5)", ge=2)


@dataclass
class SelfRewardingConfig(BestOfKConfig):
    """Self-Rewarding's judge: pi_{t-1} scores its own answers."""

    judge_template: str = spec(
        "rubric",
        "the judge prompt: rubric (Yuan et al.'s additive 5 points, paraphrased), short (small contexts), a text or "
        "file:<path> naming {question} and {response} (e.g. the paper's exact rubric)",
    )
    judge_data: str | None = spec(
        None,
        "judge-training (EFT) examples, a JSONL of {prompt, response, score 0-5} or tinyworld; null: the policy "
        "judges without them",
    )
    judge_samples: int = spec(1, "judgements per answer, averaged (1: greedy; more: sampled)", gt=0)
    judge_max_new_tokens: int = spec(128, "new tokens per judgement", gt=0)


def sample_answers(
    ctx: Context, t: int, state: State, prompts: list[str], r_prompts
) -> tuple[list[list[dict]], object]:
    """pi_{t-1}'s ``samples_per_prompt`` answers per prompt (``iter_<t>/samples.jsonl``), grouped by prompt."""
    k = ctx.run.method.samples_per_prompt
    out = ctx.rundir.iter_file(t, "samples.jsonl")
    r_samples = ctx.generate(
        ctx.rundir.iter_stage(t, "samples"),
        state.policy,
        prompts,
        out,
        [state.policy_record, r_prompts],
        n=k,
        kind="samples",
    )
    rows = read_jsonl(out)
    return [rows[i * k : (i + 1) * k] for i in range(len(prompts))], r_samples


def candidate_row(ctx: Context, x: str, group: list[dict], best: int, worst: int, gap: float, threshold=None) -> dict:
    """One prompt's candidate pair (best over worst of its samples) with the filters' verdict."""
    chosen, rejected = group[best], group[worst]
    truncated = "length" in (chosen["finish_reason"], rejected["finish_reason"])
    kept, rep = pair_filter(ctx, gap, chosen["response"], rejected["response"], truncated, threshold)
    return {
        "prompt": x,
        "chosen": chosen["response"],
        "rejected": rejected["response"],
        "gap": round(gap, 6),
        "repetition": rep,
        "truncated": truncated,
        "kept": kept and best != worst,
    }


class SamplingRanking:
    """Sampling-Ranking: the scorer's best of k samples over its worst."""

    schema = BestOfKConfig
    columns = ("n_prompts", "n_pairs_kept", "n_tied", "score_best", "score_worst", "d_size", "beta")
    trainer = "simpo"  # as SynPO, so that Table 2's rows differ only in how pairs are made
    trains_sft = True  # the prompt generator (prompt_source=generator)
    draws_prompts = True

    def problems(self, cfg: DictConfig) -> list[str]:
        return source_problems(cfg)

    def prepare(self, ctx: Context, pi0_val: dict) -> State:
        return State(prepare_source(ctx), ctx.pi0, "pi_0", dict(pi0_val))

    def iteration(self, ctx: Context, t: int, state: State) -> Iteration:
        prompts, r_prompts = iteration_prompts(ctx, t, state.source, state.policy, state.policy_record)
        groups, r_samples = sample_answers(ctx, t, state, prompts, r_prompts)
        r_pairs = best_over_worst_pairs(ctx, t, prompts, groups, r_samples, "sampling_ranking")
        return select_on_d(ctx, t, state, r_pairs, dict(r_prompts.info), ctx.rundir.iter_file(t, PROMPTS))


def best_over_worst_pairs(ctx: Context, t: int, prompts: list[str], groups: list[list[dict]], r_samples, name: str):
    """The pairs stage of a best-of-k method (``name``): the scorer ranks each prompt's samples (``groups``); the
    best over the worst is kept when the scorer's own comparison of the two is over ``scorer.threshold``."""

    def score_rows(scores_file: Path):
        ranks = ranking_scores(ctx.scorer, prompts, [[r["response"] for r in g] for g in groups])
        best = [max(range(len(s)), key=s.__getitem__) for s in ranks]
        worst = [min(range(len(s)), key=s.__getitem__) for s in ranks]
        chosen = [g[b]["response"] for g, b in zip(groups, best, strict=True)]
        rejected = [g[w]["response"] for g, w in zip(groups, worst, strict=True)]
        c = ctx.compare_now(prompts, chosen, rejected, scores_file)
        rows = []
        for i, x in enumerate(prompts):
            row = candidate_row(ctx, x, groups[i], best[i], worst[i], c.gaps[i])
            sides = {"score_chosen": c.scores_a[i], "score_rejected": c.scores_b[i]} if c.scores_a else {}
            rows.append({**row, **sides, "rank_scores": [round(v, 6) for v in ranks[i]]})
        stats = {
            "samples_per_prompt": ctx.run.method.samples_per_prompt,
            "n_tied": sum(max(s) == min(s) for s in ranks),
            "score_best": mean([s[b] for s, b in zip(ranks, best, strict=True)]),
            "score_worst": mean([s[w] for s, w in zip(ranks, worst, strict=True)]),
            "mean_gap": mean(c.gaps),
        }
        return rows, stats

    settings = {"method": name, "threshold": ctx.run.scorer.threshold, **_filters(ctx)}
    return add_pairs(ctx, t, [r_samples], settings, score_rows)


def _filters(ctx: Context) -> dict:
    m = ctx.run.method
    return {"max_repetition": m.max_repetition, "drop_truncated": m.drop_truncated}


# --- Self-Rewarding -----------------------------------------------------------------------------------------------


def _judge_score_problem(row: dict) -> str | None:
    score = row.get("score")
    ok = isinstance(score, int | float) and not isinstance(score, bool) and 0 <= score <= 5
    return None if ok else f"'score' must be a number from 0 to 5, not {score!r}"


def load_judge_file(path: str | Path) -> list[dict]:
    """EFT rows ``{"prompt", "response", "score"}`` (score 0-5) from a JSONL file; bad rows reported ``file:line``."""
    rows = load_text_rows(path, ("prompt", "response"), "judge file", _judge_score_problem, keep=("score",))
    return [{**r, "score": round(r["score"])} for r in rows]


def judge_training_rows(ctx: Context) -> list[dict]:
    """The EFT rows of ``method.judge_data``: the tiny world's (built from the seed prompts), or a file's."""
    m = ctx.run.method
    if (w := world(m.judge_data)) is not None:
        return w.judge_examples([r["prompt"] for r in ctx.seed_train], ctx.seed_for("judge_data"))
    return load_judge_file(m.judge_data)


def read_judgements(rows: list[dict], n_answers: int, per_answer: int) -> tuple[list[float | None], int]:
    """Each answer's mean parsed score over its ``per_answer`` judgements (None: none readable), and how many
    judgements could not be read."""
    scores, unparsed = [], 0
    for a in range(n_answers):
        parsed = [parse_judge_score(r["response"]) for r in rows[a * per_answer : (a + 1) * per_answer]]
        unparsed += sum(v is None for v in parsed)
        good = [v for v in parsed if v is not None]
        scores.append(sum(good) / len(good) if good else None)
    return scores, unparsed


class SelfRewarding:
    """Self-Rewarding: the policy's own judgement of k samples, highest over lowest."""

    schema = SelfRewardingConfig
    columns = ("n_prompts", "n_pairs_kept", "judge_unparsed", "judge_agreement", "d_size", "beta")
    trainer = "simpo"
    trains_sft = True
    draws_prompts = True

    def problems(self, cfg: DictConfig) -> list[str]:
        problem = world_or_file_problem(cfg, "method.judge_data", load_judge_file, required=False)
        return source_problems(cfg) + template_problems(cfg, "judge_template") + ([problem] if problem else [])

    def prepare(self, ctx: Context, pi0_val: dict) -> State:
        """The prompt source, and M_1 = pi_0 after evaluation fine-tuning on ``method.judge_data`` (if given)."""
        state = State(prepare_source(ctx), ctx.pi0, "pi_0", dict(pi0_val))
        m = ctx.run.method
        if not m.judge_data:
            return state
        judge = [
            {
                "prompt": judge_prompt(template("judge_template", m.judge_template), r["prompt"], r["response"]),
                "completion": judge_target(r["score"]),
            }
            for r in judge_training_rows(ctx)
        ]
        # pi_0's own answers to the seed prompts ride along, so that learning to judge does not overwrite how it
        # answers (EFT alone at the tiny world's learning rate turned its answers into noise).
        prompts = [r["prompt"] for r in ctx.seed_train]
        own = ctx.rundir.path("judge_sft", "replay.jsonl")
        r_own = ctx.generate("judge_sft_replay", ctx.pi0, prompts, own, [ctx.seed_record], kind="judge_sft_replay")
        replay = [{"prompt": r["prompt"], "completion": r["response"]} for r in read_jsonl(own)]
        out = ctx.rundir.path("judge_sft", "model")
        rec = ctx.train_sft("judge_sft", judge + replay, out, [ctx.seed_record, r_own])
        state.policy, state.policy_record, state.base = str(out), rec, (str(out), rec)
        return state

    def judge(self, ctx: Context, t: int, state: State, groups: list[list[dict]], r_samples):
        """pi_{t-1}'s judgements of every sampled answer (``iter_<t>/judgements.jsonl``)."""
        m = ctx.run.method
        answers = [r for g in groups for r in g]
        out = ctx.rundir.iter_file(t, "judgements.jsonl")
        return ctx.generate(
            ctx.rundir.iter_stage(t, "judge"),
            state.policy,
            [judge_prompt(template("judge_template", m.judge_template), r["prompt"], r["response"]) for r in answers],
            out,
            [r_samples],
            temperature=0.0 if m.judge_samples == 1 else None,
            max_new_tokens=m.judge_max_new_tokens,
            n=m.judge_samples,
            kind="judge",
        )

    def iteration(self, ctx: Context, t: int, state: State) -> Iteration:
        m = ctx.run.method
        prompts, r_prompts = iteration_prompts(ctx, t, state.source, state.policy, state.policy_record)
        groups, r_samples = sample_answers(ctx, t, state, prompts, r_prompts)
        r_judge = self.judge(ctx, t, state, groups, r_samples)

        def score_rows(scores_file: Path):
            n = sum(len(g) for g in groups)
            flat, unparsed = read_judgements(
                read_jsonl(ctx.rundir.iter_file(t, "judgements.jsonl")), n, m.judge_samples
            )
            rows, k = [], 0
            for x, g in zip(prompts, groups, strict=True):
                own = flat[k : k + len(g)]
                k += len(g)
                scored = [j for j, v in enumerate(own) if v is not None]
                best = max(scored, key=own.__getitem__, default=0)
                worst = min(scored, key=own.__getitem__, default=0)
                gap = own[best] - own[worst] if scored else 0.0
                row = candidate_row(ctx, x, g, best, worst, gap, threshold=0.0)
                rows.append({**row, "judge_scores": own, "score_chosen": own[best], "score_rejected": own[worst]})
            kept = [r for r in rows if r["kept"]]
            agree = ctx.scorer.compare(
                [r["prompt"] for r in kept], [r["chosen"] for r in kept], [r["rejected"] for r in kept]
            )
            stats = {
                "samples_per_prompt": m.samples_per_prompt,
                "judge_unparsed": unparsed,
                "judge_unparsed_rate": round(unparsed / max(1, n * m.judge_samples), 6),
                "judge_agreement": mean([float(g > 0) for g in agree.gaps]) if agree else None,
                "mean_gap": mean([r["gap"] for r in kept]),
            }
            return rows, stats

        settings = {"method": "self_rewarding", "template": m.judge_template, **_filters(ctx)}
        r_pairs = add_pairs(ctx, t, [r_judge], settings, score_rows)
        i = r_pairs.info
        rule = (
            f"two answers whose self-judged scores differ; {i['judge_unparsed']} of the "
            f"{i['n_candidates'] * m.samples_per_prompt * m.judge_samples} judgements had no readable 'Score: N' (see "
            f"{ctx.rundir.iter_file(t, 'judgements.jsonl')}: a judge that cannot answer in that format needs "
            "method.judge_data to learn it)"
        )
        return select_on_d(ctx, t, state, r_pairs, dict(r_prompts.info), ctx.rundir.iter_file(t, PROMPTS), rule)


METHODS = {"sampling_ranking": SamplingRanking(), "self_rewarding": SelfRewarding()}
