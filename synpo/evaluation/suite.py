"""The evaluation groups that ``eval=[...]`` enables, run after pi_0 and after each iteration (or only the last):
win rates, lm-eval suites, prompt diversity, exports for the official tools. Each group is a resumable stage of the
run directory under ``iter_<t>/evals/``; the answers it needs are generated in shards, so a crash during
evaluation redoes neither finished groups nor finished shards. Returns the metrics merged into the iteration's row
(results.json and W&B)."""

from __future__ import annotations

import json
import logging
import shutil

from omegaconf import OmegaConf

from synpo.artifacts import StageRecord, atomic_write_text, read_json, read_jsonl, write_json
from synpo.scoring import is_pairwise

log = logging.getLogger(__name__)


def evaluate_groups(ctx, t: int, policy: str, policy_record: StageRecord | str) -> dict:
    e = ctx.cfg.eval
    if e.every == "final" and t not in (0, ctx.cfg.method.iterations):
        return {}
    metrics: dict = {}
    if e.winrate.enabled:
        metrics.update(_winrate(ctx, t, policy, policy_record))
    if e.diversity.enabled:
        metrics.update(_diversity(ctx, t))
    for name in e.lm_eval.suites:
        metrics.update(_lm_eval(ctx, t, name, policy, policy_record))
    if e.export.enabled:
        _export(ctx, t, policy, policy_record)
    return metrics


def model_name(run_name: str, t: int) -> str:
    """The model's name in exported answers and judgments: ``<run name>-iter<t>``."""
    return f"{run_name}-iter{t}"


def model_label(cfg, t: int) -> str:
    return model_name(cfg.name, t)


# --- win rate -----------------------------------------------------------------------------------------------------


def _winrate(ctx, t: int, policy: str, policy_record) -> dict:
    from synpo.evaluation.winrate import (
        alpaca_preference,
        lc_win_rate,
        preferences_from_gaps,
        preferences_from_verdicts,
        win_rate,
    )

    cfg, run, w = ctx.cfg, ctx.run, ctx.cfg.eval.winrate
    it = f"iter_{t}"
    prompts = [r["prompt"] for r in ctx.seed_val]
    answers_file = run.path(it, "evals", "answers.jsonl")
    r_answers = ctx.record(
        "evals",
        ctx.generate(f"{it}/evals/answers", policy, prompts, answers_file, [policy_record], temperature=w.temperature),
    )
    if w.reference == "gold":
        references, ref_name, ref_deps = [r["answer"] for r in ctx.seed_val], "reference", [ctx.seed_record]
    else:
        ref_file = run.path("iter_0", "evals", "answers.jsonl")
        references = [r["response"] for r in read_jsonl(ref_file)]
        ref_name, ref_deps = model_label(cfg, 0), []
    out_file, ann_file = run.path(it, "evals", "winrate.json"), run.path(it, "evals", "annotations.json")
    model = model_label(cfg, t)

    def fn():
        answers = [r["response"] for r in read_jsonl(answers_file)]
        shards = out_file.with_name("winrate.scores.shards")
        gaps, _, _ = ctx.gaps(prompts, answers, references, shards)
        prefs = preferences_from_verdicts(gaps) if cfg.scorer.name == "judge" else preferences_from_gaps(gaps, w.tie)
        result = {f"wr_{k}": v for k, v in win_rate(prefs, n_boot=w.n_boot, seed=cfg.seed).items()}
        lc = lc_win_rate(
            prefs, [len(a) for a in answers], [len(r) for r in references], n_boot=w.n_boot, seed=cfg.seed
        )
        result.update({f"wr_{k}": v for k, v in lc.items()})
        result["wr_avg_length"] = sum(map(len, answers)) / len(answers)
        result["wr_reference"] = w.reference
        # The annotations in AlpacaEval's own format: alpaca_eval and our reader take them as they are.
        annotations = [
            {
                "instruction": x,
                "output_1": ref,
                "generator_1": ref_name,
                "output_2": ans,
                "generator_2": model,
                "annotator": cfg.scorer.name + ("" if is_pairwise(ctx.scorer) else "_score_gap"),
                "preference": alpaca_preference(p),
            }
            for x, ref, ans, p in zip(prompts, references, answers, prefs, strict=True)
        ]
        atomic_write_text(ann_file, json.dumps(annotations, indent=1, ensure_ascii=False))
        write_json(out_file, result)
        shutil.rmtree(shards, ignore_errors=True)
        return None

    settings = {"winrate": OmegaConf.to_container(w), "scorer": ctx.scorer_settings(), "references": references}
    ctx.record("evals", run.stage(f"{it}/evals/winrate", settings, [out_file, ann_file], fn, [r_answers, *ref_deps]))
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


def _diversity(ctx, t: int) -> dict:
    from synpo.evaluation.diversity import diversity_metrics, histogram

    cfg, run, d = ctx.cfg, ctx.run, ctx.cfg.eval.diversity
    it = f"iter_{t}"
    if t == 0:
        prompts, label, deps = [r["prompt"] for r in ctx.seed_train], "seed", [ctx.seed_record]
    else:
        source = run.path(it, "prompts.jsonl")
        if not source.is_file():  # SPIN trains on the seed prompts: nothing synthetic to measure
            return {}
        prompts, label, deps = [r["prompt"] for r in read_jsonl(source)], f"iteration {t}", []
    out = run.path(it, "evals", "diversity.json")

    def fn():
        m, cos = diversity_metrics(prompts, d.embedder, d.max_prompts, d.self_bleu_max, cfg.seed)
        write_json(out, {**m, "label": label, "histogram": histogram(cos)})

    settings = {"diversity": OmegaConf.to_container(d), "prompts": prompts}
    ctx.record("evals", run.stage(f"{it}/evals/diversity", settings, [out], fn, deps))
    m = read_json(out)
    return {f"div_{k}": m[k] for k in ("mean_cosine", "distinct_1", "distinct_2", "self_bleu", "n_prompts")}


# --- lm-eval ------------------------------------------------------------------------------------------------------


def _lm_eval(ctx, t: int, name: str, policy: str, policy_record) -> dict:
    from synpo.evaluation.harness import run_suite

    cfg, run, h = ctx.cfg, ctx.run, ctx.cfg.eval.lm_eval
    it = f"iter_{t}"
    suite = h.suites[name]
    tasks = [dict(task) for task in OmegaConf.to_container(suite.tasks)]
    out = run.path(it, "evals", f"lm_{name}.json")

    def fn():
        result = run_suite(
            policy,
            tasks,
            run.path(it, "evals", f"lm_{name}_work"),
            backend=h.backend,
            batch_size=h.batch_size,
            limit=h.limit,
            apply_chat_template=suite.apply_chat_template,
            include_path=h.include_path,
            dtype=cfg.model.dtype,
            trust_remote_code=cfg.model.trust_remote_code,
            vllm={"tensor_parallel_size": h.tensor_parallel_size, "gpu_memory_utilization": h.gpu_memory_utilization},
            seed=cfg.seed,
        )
        write_json(out, result)

    settings = {"suite": OmegaConf.to_container(suite), "lm_eval": OmegaConf.to_container(h), "model": policy}
    ctx.record("evals", run.stage(f"{it}/evals/lm_{name}", settings, [out], fn, [policy_record]))
    return {f"lm_{name}_{k}": v for k, v in read_json(out).items()}


# --- exports ------------------------------------------------------------------------------------------------------


def _export(ctx, t: int, policy: str, policy_record) -> None:
    from synpo.evaluation import exports

    cfg, run, x = ctx.cfg, ctx.run, ctx.cfg.eval.export
    it = f"iter_{t}"
    model = model_label(cfg, t)
    val = [r["prompt"] for r in ctx.seed_val]
    root = run.path(it, "export")

    def answer(tag: str, prompts: list, deps: list) -> tuple[list[str], StageRecord]:
        out = run.path(it, "export", f".{tag}.jsonl")
        rec = ctx.record(
            "evals",
            ctx.generate(
                f"{it}/export/{tag}",
                policy,
                prompts,
                out,
                deps,
                temperature=x.temperature,
                max_new_tokens=x.max_new_tokens,
            ),
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
