"""Validation on the held-out seed prompts (the stage that selects beta): greedy and sampled answers, their mean
value under the run's scorer, exact accuracy where the scorer can tell, and the win rate against pi_0's answers."""

from __future__ import annotations

from pathlib import Path

from synpo.artifacts import COMPUTE, METRICS, VAL_ANSWERS, StageRecord, read_jsonl, sibling, write_json, write_jsonl
from synpo.compute import add_compute
from synpo.errors import UserError
from synpo.evaluation.config import VALIDATION_FIELDS, EvalConfig
from synpo.generation.protocol import SamplingParams, generation_compute
from synpo.schema import identity
from synpo.scoring import values_against
from synpo.stages import Context


def win_rate(gaps: list[float], tie_eps: float = 1e-9) -> float:
    """Share of prompts where the gap is positive; a tie (|gap| <= tie_eps) counts one half."""
    if not gaps:
        raise ValueError("win_rate needs a non-empty list of gaps")
    return sum(1.0 if g > tie_eps else 0.5 if abs(g) <= tie_eps else 0.0 for g in gaps) / len(gaps)


PARTS = ("content", "form")  # the score's parts that validation reports as ``val_<part>`` where the scorer has them


def validation_metrics(rows: list[dict]) -> dict:
    """Metrics from answer rows ``{greedy_score, [sampled_score], [greedy_exact], [greedy_<part>],
    [<kind>_vs_reference]}``.

    Without a reference (pi_0 itself) the win rate against pi_0 is one half by definition."""
    n = len(rows)
    out = {"val_score": round(sum(r["greedy_score"] for r in rows) / n, 6)}
    if rows[0].get("greedy_exact") is not None:
        out["val_exact"] = round(sum(r["greedy_exact"] for r in rows) / n, 6)
    for part in PARTS:
        if f"greedy_{part}" in rows[0]:
            out[f"val_{part}"] = round(sum(r[f"greedy_{part}"] for r in rows) / n, 6)
    if "sampled_score" in rows[0]:
        out["val_score_sampled"] = round(sum(r["sampled_score"] for r in rows) / n, 6)
    if "greedy_truncated" in rows[0]:
        out["val_truncated"] = round(sum(r["greedy_truncated"] for r in rows) / n, 6)
    for kind, suffix in (("greedy", ""), ("sampled", "_sampled")):
        if f"{kind}_score" in rows[0]:
            gaps = [r[f"{kind}_vs_reference"] for r in rows] if f"{kind}_vs_reference" in rows[0] else [0.0] * n
            out[f"val_win_rate{suffix}"] = round(win_rate(gaps), 6)
    return out


def _sampling(ctx: Context, kind: str) -> SamplingParams:
    e = ctx.run.eval
    if kind == "greedy":
        return SamplingParams(temperature=0.0, max_new_tokens=e.max_new_tokens, seed=0)
    return SamplingParams(
        temperature=e.temperature, max_new_tokens=e.max_new_tokens, seed=ctx.seed_for("eval_sampled")
    )


def _answer_rows(ctx: Context, model: str, reference: Path | None) -> tuple[list[dict], dict | None]:
    """The validation rows, and the compute of generating their answers."""
    prompts = [r["prompt"] for r in ctx.seed_val]
    golds = [r["answer"] for r in ctx.seed_val]
    ref_rows = read_jsonl(reference) if reference else None
    rows: list[dict] = [{"prompt": p} for p in prompts]
    compute = None
    kinds = ("greedy", "sampled") if ctx.run.eval.sampled else ("greedy",)
    answers = ctx.generator.generate_groups(model, [(prompts, _sampling(ctx, kind)) for kind in kinds])
    for kind, texts in zip(kinds, answers, strict=True):  # one engine start for both kinds
        compute = add_compute(compute, generation_compute(texts))
        values = values_against(ctx.scorer, prompts, texts, golds)
        exact = ctx.scorer.exact(prompts, texts) if kind == "greedy" else None
        parts = (ctx.scorer.parts(prompts, texts) or {}) if kind == "greedy" else {}
        direct = ctx.scorer.compare(prompts, texts, [r[kind] for r in ref_rows]).gaps if ref_rows else None
        for i, row in enumerate(rows):
            row[kind], row[f"{kind}_score"], row[f"{kind}_truncated"] = str(texts[i]), values[i], texts[i].truncated
            if exact is not None:
                row["greedy_exact"] = exact[i]
            for part in PARTS:
                if part in parts:
                    row[f"greedy_{part}"] = parts[part][i]
            if direct is not None:
                row[f"{kind}_vs_reference"] = direct[i]
    return rows, compute


def validation_stage(ctx: Context, name: str, model: str, out_dir: Path, deps: list, reference: Path | None):
    """The validation answers of ``model`` into ``out_dir`` (``val_answers.jsonl`` and ``metrics.json``).

    Each answer's value is its score, or for a scorer that only compares (PairRM, a judge) its gap against the gold
    answer; the win rate against pi_0 compares the two answers to each prompt directly."""
    answers, metrics_file = out_dir / VAL_ANSWERS, out_dir / METRICS

    def fn():
        if sibling(Path(model), "pruned").is_file() and not Path(model).exists():
            raise UserError(
                f"{model} was deleted after its iteration selected another candidate (launch.keep_candidates=false), "
                f"and its validation ({name}) must now be redone: eval.sampled, eval.temperature, "
                f"eval.max_new_tokens or the validation split changed. Delete the marker of its training stage "
                f"under {ctx.rundir.markers} to retrain it, or start the run with launch.keep_candidates=true."
            )
        rows, compute = _answer_rows(ctx, model, reference)
        write_jsonl(answers, rows)
        metrics = validation_metrics(rows)
        write_json(metrics_file, metrics)
        return {**metrics, COMPUTE: compute}

    e = ctx.run.eval
    settings = {"model": model, "val": [r["prompt"] for r in ctx.seed_val], "ref": str(reference)}
    # Validation's answers depend on its own fields alone; before 2026-12-07 the whole eval block (every group's
    # settings) was hashed, so enabling a group or changing its block redid every validation: those markers are kept.
    former = {**settings, "eval": identity(e, EvalConfig)}
    settings["eval"] = {k: e[k] for k in VALIDATION_FIELDS}
    record: StageRecord = ctx.stage(name, settings, [answers, metrics_file], fn, deps, "eval", former=[former])
    return record
