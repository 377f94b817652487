"""One round of training on data that is given or built from the seed set: the paper's "Manual" row of Table 2 and
the seed ablations of Table 7. Each runs one iteration (``method.iterations=1``) on SynPO's pipeline, with its
trainer and beta selection.

- ``offline`` ("Manual"): SimPO on a given preference set (``method.preference_file``: a JSONL of ``{prompt,
  chosen, rejected}``, e.g. UltraFeedback binarized, or ``tinyworld`` for the world's own, ``synpo.tinyworld.human``).
  Validation prompts are dropped from it. The scorer only measures how often it agrees with the file's preferences
  (``scorer_agreement``).
- ``seed_sft``: SFT of pi_0 on the seed prompts' gold answers (``sft_trainer``), validated like any policy.
- ``seed_po``: pi_0 answers the seed prompts; the gold answer is chosen over pi_0's answer, through SynPO's filters
  (gap over ``scorer.threshold``, repetition, truncation); SimPO from pi_0 over the beta grid.
- ``seed_sft_po``: both, in that order: the same pairs as ``seed_po``, trained from ``seed_sft``'s model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from synpo.artifacts import POLICY_LINK, StageRecord, file_digest, point_link, read_jsonl
from synpo.data import load_text_rows, world_or_file_problem
from synpo.evaluation.validation import validation_stage
from synpo.methods.base import Iteration
from synpo.methods.config import PairsConfig
from synpo.methods.preference import State, add_pairs, mean, pair_filter, select_on_d
from synpo.methods.prompt_sources import PromptSource
from synpo.schema import spec
from synpo.stages import Context
from synpo.worlds import world


@dataclass
class OfflineConfig(PairsConfig):
    """The "Manual" row's preference set."""

    preference_file: str | None = spec(
        None, "a JSONL of {prompt, chosen, rejected} (e.g. UltraFeedback binarized), or tinyworld"
    )
    n_preferences: int = spec(600, "with preference_file=tinyworld: the pairs drawn from the world", gt=0)


PREFERENCE_FIELDS = ("prompt", "chosen", "rejected")


def one_round_problems(cfg: DictConfig, name: str) -> list[str]:
    if cfg.method.iterations != 1:
        return [f"method.iterations={cfg.method.iterations}: {name} is one round of training; set method.iterations=1"]
    return []


def load_preference_file(path: str | Path) -> list[dict]:
    """Rows ``{prompt, chosen, rejected}`` of a JSONL file (extra fields ignored); bad rows reported ``file:line``
    (UltraFeedback binarized's chat columns must be flattened to their text first)."""
    return load_text_rows(path, PREFERENCE_FIELDS, "preference file")


class Offline:
    """The "Manual" row: SimPO on a given preference set, one round."""

    schema = OfflineConfig
    columns = ("n_candidates", "n_validation_overlap", "scorer_agreement", "d_size", "beta")
    trainer = "simpo"
    trains_sft = False
    draws_prompts = False

    def problems(self, cfg: DictConfig) -> list[str]:
        problem = world_or_file_problem(cfg, "method.preference_file", load_preference_file)
        return one_round_problems(cfg, "offline") + ([problem] if problem else [])

    def prepare(self, ctx: Context, pi0_val: dict) -> State:
        return State(PromptSource("none"), ctx.pi0, "pi_0", dict(pi0_val))

    def rows(self, ctx: Context) -> list[dict]:
        m = ctx.run.method
        if (w := world(m.preference_file)) is not None:
            return w.preferences(m.n_preferences, ctx.seed_for("manual_preferences"), ctx.seed_prompts())
        return load_preference_file(m.preference_file)

    def iteration(self, ctx: Context, t: int, state: State) -> Iteration:
        m = ctx.run.method
        held_out = {r["prompt"] for r in ctx.seed_val}

        def score_rows(scores_file: Path):
            given = self.rows(ctx)
            rows = [r for r in given if r["prompt"] not in held_out]
            c = ctx.compare_now(
                [r["prompt"] for r in rows], [r["chosen"] for r in rows], [r["rejected"] for r in rows], scores_file
            )
            out = []
            for i, r in enumerate(rows):
                sides = {"score_chosen": c.scores_a[i], "score_rejected": c.scores_b[i]} if c.scores_a else {}
                out.append({**r, **sides, "gap": round(c.gaps[i], 6), "kept": True})
            agreement = mean([float(g > 0) for g in c.gaps])
            return out, {"n_validation_overlap": len(given) - len(rows), "scorer_agreement": agreement}

        source = m.n_preferences if world(m.preference_file) is not None else file_digest(Path(m.preference_file))
        r_pairs = add_pairs(ctx, t, [ctx.seed_record], {"method": "offline", "file": source}, score_rows, True)
        return select_on_d(ctx, t, state, r_pairs, {})


@dataclass
class SeedState:
    previous_val: dict


class SeedAblation:
    """Table 7: ``seed_sft``, ``seed_po`` or ``seed_sft_po`` (see the module's docstring)."""

    schema = PairsConfig
    columns = ("d_size", "n_pairs_kept", "beta")

    def __init__(self, name: str):
        self.name = name
        self.trains_sft = name != "seed_po"
        self.trainer = None if name == "seed_sft" else "simpo"
        self.draws_prompts = False

    def problems(self, cfg: DictConfig) -> list[str]:
        return one_round_problems(cfg, self.name)

    def prepare(self, ctx: Context, pi0_val: dict) -> SeedState:
        return SeedState(dict(pi0_val))

    def seed_sft(self, ctx: Context, t: int) -> tuple[str, StageRecord]:
        examples = [{"prompt": r["prompt"], "completion": r["answer"]} for r in ctx.seed_train]
        out = ctx.rundir.iter_file(t, "seed_sft", "model")
        return str(out), ctx.train_sft(ctx.rundir.iter_stage(t, "seed_sft"), examples, out, [ctx.seed_record])

    def seed_pairs(self, ctx: Context, t: int) -> StageRecord:
        """pi_0's answers to the seed prompts, rejected against the gold answers, through SynPO's filters."""
        rundir = ctx.rundir
        prompts = [r["prompt"] for r in ctx.seed_train]
        answers_file = rundir.iter_file(t, "seed_policy.jsonl")
        r_seed = ctx.generate(
            rundir.iter_stage(t, "seed_policy"), ctx.pi0, prompts, answers_file, [ctx.seed_record], kind="seed_policy"
        )

        def score_rows(scores_file: Path):
            drafts = read_jsonl(answers_file)
            golds = [r["answer"] for r in ctx.seed_train]
            c = ctx.compare_now(prompts, golds, [d["response"] for d in drafts], scores_file)
            rows = []
            for i, x in enumerate(prompts):
                truncated = drafts[i]["finish_reason"] == "length"
                kept, rep = pair_filter(ctx, c.gaps[i], golds[i], drafts[i]["response"], truncated)
                sides = {"score_chosen": c.scores_a[i], "score_rejected": c.scores_b[i]} if c.scores_a else {}
                rows.append(
                    {
                        "prompt": x,
                        "chosen": golds[i],
                        "rejected": drafts[i]["response"],
                        **sides,
                        "gap": round(c.gaps[i], 6),
                        "repetition": rep,
                        "truncated": truncated,
                        "kept": kept,
                    }
                )
            return rows, {"mean_gap": mean(c.gaps)}

        m = ctx.run.method
        settings = {
            "method": "seed_po",
            "threshold": ctx.run.scorer.threshold,
            "max_repetition": m.max_repetition,
            "drop_truncated": m.drop_truncated,
        }
        return add_pairs(ctx, t, [r_seed], settings, score_rows, every_kept=True)

    def iteration(self, ctx: Context, t: int, state: SeedState) -> Iteration:
        rundir = ctx.rundir
        if self.name == "seed_sft":
            model, r_sft = self.seed_sft(ctx, t)
            r_eval = validation_stage(
                ctx, rundir.iter_stage(t, "eval"), model, rundir.iter_dir(t), [r_sft], rundir.reference_answers
            )
            point_link(rundir.iter_file(t, POLICY_LINK), Path(model))
            row = {"iteration": t, **r_eval.info, "d_size": len(ctx.seed_train)}
            return Iteration(row, SeedState(dict(r_eval.info)), model, r_sft)
        base = self.seed_sft(ctx, t) if self.name == "seed_sft_po" else None
        po_state = State(PromptSource("none"), ctx.pi0, "pi_0", state.previous_val, base=base)
        return select_on_d(ctx, t, po_state, self.seed_pairs(ctx, t), {})


METHODS = {"offline": Offline(), **{name: SeedAblation(name) for name in ("seed_sft", "seed_po", "seed_sft_po")}}
