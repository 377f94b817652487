"""The evaluation groups' stages (their registry: ``synpo.evaluation.groups``): win rates, prompt diversity, lm-eval
suites, exports for the official tools. Each is called as ``group(ctx, block, t, policy, policy_record, prompts_file)``,
with its own block of ``eval`` (typed by its schema), for pi_t and returns the metrics merged into the iteration's row (results.json and W&B). Each group is a resumable stage
of the run directory under ``iter_<t>/evals/``; the answers it needs are generated in shards, so a crash during
evaluation redoes neither finished groups nor finished shards."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from synpo.artifacts import StageRecord, atomic_write_text, read_json, read_jsonl, sibling, write_json
from synpo.evaluation.config import LmEvalConfig
from synpo.evaluation.exports import export_model_name
from synpo.schema import identity
from synpo.stages import Context

log = logging.getLogger(__name__)


# --- win rate -----------------------------------------------------------------------------------------------------


def _references(ctx: Context, w: DictConfig) -> tuple[list[str], str, list]:
    """The win rate's reference answers, their generator's name, and the stages they come from."""
    if w.reference == "gold":
        return [r["answer"] for r in ctx.seed_val], "reference", [ctx.seed_record]
    ref_file = ctx.rundir.iter_file(0, "evals", "answers.jsonl")
    return [r["response"] for r in read_jsonl(ref_file)], export_model_name(ctx.run.name, 0), []


def _winrate_result(ctx: Context, w: DictConfig, prompts, answers, references, gaps) -> tuple[dict, list[float]]:
    from synpo.evaluation.winrate import lc_win_rate, win_rate

    run = ctx.run
    prefs = ctx.scorer.preferences(gaps, w.tie)
    result = {f"wr_{k}": v for k, v in win_rate(prefs, n_boot=w.n_boot, seed=run.seed).items()}
    lc = lc_win_rate(prefs, [len(a) for a in answers], [len(r) for r in references], n_boot=w.n_boot, seed=run.seed)
    result.update({f"wr_{k}": v for k, v in lc.items()})
    result["wr_avg_length"] = sum(map(len, answers)) / len(answers)
    result["wr_reference"] = w.reference
    return result, prefs


def winrate(ctx: Context, w: DictConfig, t: int, policy: str, policy_record, prompts_file: Path | None = None) -> dict:
    """Win rate of pi_t's answers against the references, judged by the run's scorer; AlpacaEval-format
    annotations beside it."""
    from synpo.evaluation.winrate import alpaca_preference

    run, rundir = ctx.run, ctx.rundir
    prompts = [r["prompt"] for r in ctx.seed_val]
    answers_file = rundir.iter_file(t, "evals", "answers.jsonl")
    r_answers = ctx.generate(
        rundir.iter_stage(t, "evals", "answers"),
        policy,
        prompts,
        answers_file,
        [policy_record],
        temperature=w.temperature,
        kind="evals",
    )
    references, ref_name, ref_deps = _references(ctx, w)
    out_file, ann_file = rundir.iter_file(t, "evals", "winrate.json"), rundir.iter_file(t, "evals", "annotations.json")
    model = export_model_name(run.name, t)

    def fn():
        answers = [r["response"] for r in read_jsonl(answers_file)]
        comparison = ctx.compare_now(prompts, answers, references, out_file)
        result, prefs = _winrate_result(ctx, w, prompts, answers, references, comparison.gaps)
        annotator = run.scorer.name + ("" if comparison.pairwise else "_score_gap")
        # The annotations in AlpacaEval's own format: alpaca_eval and our reader take them as they are.
        annotations = [
            {
                "instruction": x,
                "output_1": ref,
                "generator_1": ref_name,
                "output_2": ans,
                "generator_2": model,
                "annotator": annotator,
                "preference": alpaca_preference(p),
            }
            for x, ref, ans, p in zip(prompts, references, answers, prefs, strict=True)
        ]
        atomic_write_text(ann_file, json.dumps(annotations, indent=1, ensure_ascii=False))
        write_json(out_file, result)
        shutil.rmtree(sibling(out_file, "shards"), ignore_errors=True)

    settings = {"winrate": OmegaConf.to_container(w), "scorer": ctx.scorer_settings(), "references": references}
    name = rundir.iter_stage(t, "evals", "winrate")
    ctx.stage(name, settings, [out_file, ann_file], fn, [r_answers, *ref_deps], "evals")
    result = read_json(out_file)
    return {k: v for k, v in result.items() if k in _WR_KEYS}


_WR_KEYS = {
    "wr_win_rate",
    "wr_standard_error",
    "wr_ci_low",
    "wr_ci_high",
    "wr_length_controlled_winrate",
    "wr_lc_standard_error",
    "wr_lc_ci_low",
    "wr_lc_ci_high",
    "wr_avg_length",
}


# --- diversity ----------------------------------------------------------------------------------------------------


def diversity(ctx: Context, d: DictConfig, t: int, policy: str, policy_record, prompts_file: Path | None) -> dict:
    """Diversity of the iteration's synthetic prompts (of the seed prompts at t = 0; nothing for a method that makes
    no prompts)."""
    from synpo.evaluation.diversity import diversity_metrics, histogram

    if t > 0 and prompts_file is None:
        return {}

    run, rundir = ctx.run, ctx.rundir
    if prompts_file is None:  # iteration 0: the seed prompts
        prompts, label, deps = [r["prompt"] for r in ctx.seed_train], "seed", [ctx.seed_record]
    else:
        prompts, label, deps = [r["prompt"] for r in read_jsonl(prompts_file)], f"iteration {t}", []
    out = rundir.iter_file(t, "evals", "diversity.json")

    def fn():
        m, cos = diversity_metrics(prompts, d.embedder, d.max_prompts, d.self_bleu_max, run.seed)
        write_json(out, {**m, "label": label, "histogram": histogram(cos)})

    settings = {"diversity": OmegaConf.to_container(d), "prompts": prompts}
    ctx.stage(rundir.iter_stage(t, "evals", "diversity"), settings, [out], fn, deps, "evals")
    m = read_json(out)
    return {f"div_{k}": m[k] for k in ("mean_cosine", "distinct_1", "distinct_2", "self_bleu", "n_prompts")}


# --- lm-eval ------------------------------------------------------------------------------------------------------


def lm_eval(ctx: Context, h: DictConfig, t: int, policy: str, policy_record, prompts_file: Path | None = None) -> dict:
    """Each lm-eval suite of ``eval.lm_eval.suites``, one stage each."""
    metrics: dict = {}
    for name in h.suites:
        metrics.update(_lm_eval_suite(ctx, h, t, name, policy, policy_record))
    return metrics


def _lm_eval_suite(ctx: Context, h: DictConfig, t: int, name: str, policy: str, policy_record) -> dict:
    from synpo.evaluation.harness import run_suite

    run, rundir = ctx.run, ctx.rundir
    suite = h.suites[name]
    tasks = [dict(task) for task in OmegaConf.to_container(suite.tasks)]
    out = rundir.iter_file(t, "evals", f"lm_{name}.json")

    def fn():
        ctx.free_devices()  # lm-eval loads the policy on the accelerator itself
        result = run_suite(
            policy,
            tasks,
            rundir.iter_file(t, "evals", f"lm_{name}_work"),
            backend=h.backend,
            batch_size=h.batch_size,
            limit=h.limit,
            apply_chat_template=suite.apply_chat_template,
            include_path=h.include_path,
            dtype=run.model.dtype,
            trust_remote_code=run.model.trust_remote_code,
            vllm={"tensor_parallel_size": h.tensor_parallel_size, "gpu_memory_utilization": h.gpu_memory_utilization},
            seed=run.seed,
        )
        write_json(out, result)

    block = identity(h, LmEvalConfig)
    settings = {"suite": OmegaConf.to_container(suite), "model": policy}
    # A suite depends on its own tasks, not the others' (before 2026-12-07 every suite hashed them all, so adding a
    # suite redid the rest: those markers are kept).
    former = {**settings, "lm_eval": block}
    settings["lm_eval"] = {k: v for k, v in block.items() if k != "suites"}
    stage = rundir.iter_stage(t, "evals", f"lm_{name}")
    ctx.stage(stage, settings, [out], fn, [policy_record], "evals", former=[former])
    return {f"lm_{name}_{k}": v for k, v in read_json(out).items()}


# --- exports ------------------------------------------------------------------------------------------------------


def export(ctx: Context, x: DictConfig, t: int, policy: str, policy_record, prompts_file: Path | None = None) -> dict:
    """pi_t's answers in the formats of ``eval.export.formats``, for the official tools' judges; no metrics."""
    from synpo.evaluation import exports

    run, rundir = ctx.run, ctx.rundir
    model = export_model_name(run.name, t)
    val = [r["prompt"] for r in ctx.seed_val]
    root = rundir.iter_file(t, "export")

    def answer(tag: str, prompts: list, deps: list) -> tuple[list[str], StageRecord]:
        out = rundir.iter_file(t, "export", f".{tag}.jsonl")
        rec = ctx.generate(
            rundir.iter_stage(t, "export", tag),
            policy,
            prompts,
            out,
            deps,
            temperature=x.temperature,
            max_new_tokens=x.max_new_tokens,
            kind="evals",
        )
        return [r["response"] for r in read_jsonl(out)], rec

    if "alpaca_eval" in x.formats:
        if x.alpaca_eval_questions:
            instructions, datasets = exports.read_alpaca_eval_questions(x.alpaca_eval_questions)
        else:
            instructions, datasets = val, None
        outputs, _ = answer("alpaca_eval", instructions, [policy_record])
        exports.write_alpaca_eval_outputs(
            root / "alpaca_eval" / "model_outputs.json", model, instructions, outputs, datasets
        )
    for fmt, questions in (("arena_hard", x.arena_hard_questions), ("mt_bench", x.mt_bench_questions)):
        if fmt not in x.formats:
            continue
        if questions:
            ids, turns = exports.read_questions(questions, arena_hard=fmt == "arena_hard")
        else:
            ids, turns = list(range(1, len(val) + 1)), [[p] for p in val]
        first, rec = answer(f"{fmt}_turn1", [q[0] for q in turns], [policy_record])
        answers = [[a] for a in first]
        multi = [i for i, q in enumerate(turns) if len(q) > 1]
        if multi:  # MT-Bench's second turn sees the first exchange
            conversations = [
                [
                    {"role": "user", "content": turns[i][0]},
                    {"role": "assistant", "content": first[i]},
                    {"role": "user", "content": turns[i][1]},
                ]
                for i in multi
            ]
            second, _ = answer(f"{fmt}_turn2", conversations, [rec])
            for i, a in zip(multi, second, strict=True):
                answers[i].append(a)
        exports.write_model_answers(
            root / fmt / "model_answer" / f"{model}.jsonl", model, ids, answers, arena_hard=fmt == "arena_hard"
        )
    return {}
