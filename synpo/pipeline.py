"""The iteration loop: prepare the run directory and seed data, evaluate pi_0, run T iterations of the method,
write the results. Every heavy step is a resumable stage of ``synpo.artifacts.RunDir``.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from synpo.artifacts import (
    RunDir,
    StageRecord,
    atomic_write_text,
    file_digest,
    keep_only_shards_of,
    read_jsonl,
    write_json,
    write_jsonl,
)
from synpo.config import IDENTITY_KEYS, hparams
from synpo.errors import UserError
from synpo.generation.protocol import Generator, SamplingParams
from synpo.scoring import Scorer, is_pairwise, make_scorer, score_gaps
from synpo.tracking import loggable_config, make_tracker

log = logging.getLogger(__name__)


def stage_seed(base: int, name: str) -> int:
    """A per-stage seed, so that skipping a finished stage never shifts the random streams of later ones."""
    return (base * 1_000_003 + zlib.crc32(name.encode())) % (2**31 - 1)


@dataclass
class Context:
    """What every stage of a run needs: the config, the run directory, and the components it configured."""

    cfg: DictConfig
    run: RunDir
    generator: Generator
    scorer: Scorer
    pi0: str
    seed_train: list[dict]
    seed_val: list[dict]
    seed_record: StageRecord
    seconds: dict = field(default_factory=dict)  # stage wall seconds of the current iteration

    # --- stages shared by the methods -------------------------------------------------------------------------

    def sampling(self, name: str, temperature: float | None = None, max_new_tokens: int | None = None):
        g = self.cfg.generator
        return SamplingParams(
            temperature=g.temperature if temperature is None else temperature,
            top_p=g.top_p,
            max_new_tokens=g.max_new_tokens if max_new_tokens is None else max_new_tokens,
            seed=stage_seed(self.cfg.seed, name),
        )

    def record(self, key: str, rec: StageRecord) -> StageRecord:
        self.seconds[key] = self.seconds.get(key, 0.0) + (0.0 if rec.skipped else rec.seconds)
        return rec

    def generate(
        self,
        name: str,
        model: str,
        prompts: list[str],
        out: Path,
        deps: list,
        temperature: float | None = None,
        extra: list[dict] | None = None,
        max_new_tokens: int | None = None,
    ) -> StageRecord:
        """Answers of ``model`` to ``prompts``, written to ``out`` as rows ``{prompt, response, **extra}``."""
        sampling = self.sampling(name, temperature, max_new_tokens)
        shard_dir = out.with_name(out.name + ".shards")

        def fn():
            keep_only_shards_of(shard_dir, settings)
            responses = self.generator.generate(model, prompts, sampling, shard_dir=shard_dir)
            rows = [{"prompt": p, "response": r} for p, r in zip(prompts, responses, strict=True)]
            for row, more in zip(rows, extra or [{}] * len(rows), strict=True):
                row.update(more)
            write_jsonl(out, rows)
            shutil.rmtree(shard_dir, ignore_errors=True)
            return {"n": len(rows)}

        settings = {
            "model": model,
            "prompts": prompts,
            "sampling": sampling.__dict__,
            "backend": OmegaConf.to_container(self.cfg.generator),
        }
        return self.run.stage(name, settings, [out], fn, deps)

    def scorer_settings(self) -> dict:
        """What the scorer's numbers depend on (its config without the threshold, which only filters)."""
        settings = OmegaConf.to_container(self.cfg.scorer)
        settings.pop("threshold", None)
        return settings

    def gaps(self, prompts: list[str], a: list[str], b: list[str], shard_dir: Path):
        """``score_gaps`` with this run's scorer, in resumable shards under ``shard_dir``."""
        return score_gaps(self.scorer, prompts, a, b, shard_dir, self.cfg.scorer.shard_size, self.scorer_settings())

    def read_scores(self, path: Path) -> tuple[list[float], list[float] | None, list[float] | None]:
        """``(gaps, scores_a, scores_b)`` back from a ``score_pairs`` file (the scores are None when pairwise)."""
        rows = read_jsonl(path)
        pointwise = not is_pairwise(self.scorer)
        gaps = [r["gap"] for r in rows]
        return (
            gaps,
            [r["score_a"] for r in rows] if pointwise else None,
            [r["score_b"] for r in rows] if pointwise else None,
        )

    def score_pairs(self, name: str, prompts: list[str], a: list[str], b: list[str], out: Path, deps: list):
        """How much better ``a`` is than ``b`` per prompt, into ``out`` as rows ``{gap, score_a, score_b}``
        (the scores are null for pairwise scorers); scored in resumable shards."""
        shard_dir = out.with_name(out.name + ".shards")

        def fn():
            gaps, sa, sb = self.gaps(prompts, a, b, shard_dir)
            write_jsonl(
                out,
                [
                    {"gap": g, "score_a": None if sa is None else sa[i], "score_b": None if sb is None else sb[i]}
                    for i, g in enumerate(gaps)
                ],
            )
            shutil.rmtree(shard_dir, ignore_errors=True)
            return {"n": len(gaps)}

        settings = {"scorer": self.scorer_settings(), "prompts": prompts, "a": a, "b": b}
        return self.run.stage(name, settings, [out], fn, deps)

    def train_sft(self, name: str, examples: list[dict], out: Path, deps: list, max_length: int | None = None):
        """SFT of pi_0 on ``examples`` (sft_trainer settings; ``max_length`` overrides its max length)."""
        from synpo.training.launch import run_training_job

        hp = hparams(self.cfg.sft_trainer, self.cfg.model, stage_seed(self.cfg.seed, name))
        if max_length is not None:
            hp.max_length = max_length
        tr = self.cfg.model.trust_remote_code
        return self.run.stage(
            name,
            {"hp": hp.__dict__, "examples": examples, "from": self.pi0},
            [out],
            lambda: run_training_job(
                "sft", out, self.cfg.sft_trainer, model_path=self.pi0, examples=examples, hp=hp, trust_remote_code=tr
            ),
            deps,
        )

    def evaluate(self, name: str, model: str, out_dir: Path, deps: list, reference: Path | None) -> StageRecord:
        """Validation answers of ``model`` (greedy, and sampled if configured) and their metrics.

        A pointwise scorer scores each answer. A pairwise scorer (PairRM) scores each answer against the prompt's
        gold answer, and the win rate against pi_0 comes from comparing the two answers directly.
        """
        from synpo.evaluation.validation import validation_metrics
        from synpo.scoring import is_pairwise

        prompts = [r["prompt"] for r in self.seed_val]
        golds = [r["answer"] for r in self.seed_val]
        pairwise = is_pairwise(self.scorer)
        e = self.cfg.eval
        answers = out_dir / "val_answers.jsonl"
        metrics_file = out_dir / "metrics.json"

        def scores(texts: list[str]) -> list[float]:
            return self.scorer.gaps(prompts, texts, golds) if pairwise else self.scorer.score(prompts, texts)

        def fn():
            ref_rows = read_jsonl(reference) if reference else None
            greedy = self.generator.generate(
                model, prompts, SamplingParams(temperature=0.0, max_new_tokens=e.max_new_tokens, seed=0)
            )
            rows = [{"prompt": p, "greedy": g} for p, g in zip(prompts, greedy, strict=True)]
            for row, s in zip(rows, scores(greedy), strict=True):
                row["greedy_score"] = s
            if hasattr(self.scorer, "exact"):
                for row, x in zip(rows, self.scorer.exact(prompts, greedy), strict=True):
                    row["greedy_exact"] = x
            if e.sampled:
                sp = SamplingParams(
                    temperature=e.temperature,
                    max_new_tokens=e.max_new_tokens,
                    seed=stage_seed(self.cfg.seed, "eval_sampled"),
                )
                sampled = self.generator.generate(model, prompts, sp)
                for row, text, s in zip(rows, sampled, scores(sampled), strict=True):
                    row["sampled"], row["sampled_score"] = text, s
            if pairwise and ref_rows is not None:
                for kind in ("greedy", "sampled") if e.sampled else ("greedy",):
                    direct = self.scorer.gaps(prompts, [r[kind] for r in rows], [r[kind] for r in ref_rows])
                    for row, g in zip(rows, direct, strict=True):
                        row[f"{kind}_vs_reference"] = g
            write_jsonl(answers, rows)
            metrics = validation_metrics(rows, ref_rows if ref_rows is not None else rows)
            write_json(metrics_file, metrics)
            return metrics

        settings = {"model": model, "eval": OmegaConf.to_container(e), "val": prompts, "ref": str(reference)}
        return self.run.stage(name, settings, [answers, metrics_file], fn, deps)


# --- the run ----------------------------------------------------------------------------------------------------


def check_compatible(run: RunDir, cfg: DictConfig) -> None:
    """Refuse a run directory that holds a run with another identity (model, data, method or seed)."""
    saved_file = run.path("config.yaml")
    if not saved_file.is_file():
        return
    saved = OmegaConf.load(saved_file)
    clashes = []
    for key in IDENTITY_KEYS:
        old, new = OmegaConf.select(saved, key), OmegaConf.select(cfg, key)
        if old != new:
            clashes.append(f"{key}: the directory has {old!r}, this command asks for {new!r}")
    if clashes:
        raise UserError(
            f"The run directory {run.root} was created by an incompatible config:\n  - "
            + "\n  - ".join(clashes)
            + "\nResuming would mix two runs. Choose another directory with run_dir=<path> (or name=<label>), or "
            "delete that directory to start over. Other keys (thresholds, beta grid, counts) may change: the stages "
            "they affect are redone."
        )


def make_generator(cfg: DictConfig) -> Generator:
    if cfg.generator.backend == "hf":
        from synpo.generation.hf import HFGenerator

        return HFGenerator(
            batch_size=cfg.generator.batch_size,
            shard_size=cfg.generator.shard_size,
            dtype=cfg.model.dtype,
            trust_remote_code=cfg.model.trust_remote_code,
        )
    if cfg.generator.backend == "vllm":
        from synpo.generation.vllm import VLLMGenerator

        g = cfg.generator
        return VLLMGenerator(
            python=g.python,
            tensor_parallel_size=g.tensor_parallel_size,
            gpu_memory_utilization=g.gpu_memory_utilization,
            dtype=cfg.model.dtype,
            max_model_len=g.max_model_len,
            shard_size=g.shard_size,
            devices=None if g.devices is None else list(g.devices),
            enforce_eager=g.enforce_eager,
            trust_remote_code=cfg.model.trust_remote_code,
        )
    raise UserError(f"generator.backend={cfg.generator.backend!r} is not available; choose 'hf' or 'vllm'.")


def _seed_answer(task, data: DictConfig, rng: random.Random) -> str:
    """A tiny-world seed answer: gold, or SFT-quality (mostly terse, ``sft_noise`` of them wrong) for SPIN."""
    if data.answers == "gold":
        return task.gold()
    from synpo.tinyworld.build_sft import TERSE_SHARE, corrupt

    if rng.random() < data.sft_noise:
        return corrupt(task, rng)
    return task.terse() if rng.random() < TERSE_SHARE else task.gold()


def prepare_seed(cfg: DictConfig, run: RunDir) -> StageRecord:
    """``seed/train.jsonl`` and ``seed/val.jsonl``: drawn from the tiny world or read from a JSONL file."""
    from synpo.data import load_hf_seed, load_seed_file, split_seed

    train, val = run.path("seed", "train.jsonl"), run.path("seed", "val.jsonl")
    d = cfg.data

    def fn():
        if d.source == "tinyworld":
            from synpo.tinyworld.tasks import sample_distinct_tasks

            rng = random.Random(stage_seed(cfg.seed, "seed"))
            val_tasks = sample_distinct_tasks(rng, d.n_val)
            train_tasks = sample_distinct_tasks(rng, d.n_train, exclude={t.prompt for t in val_tasks})
            answer_rng = random.Random(stage_seed(cfg.seed, "seed_answers"))
            train_rows = [{"prompt": t.prompt, "answer": _seed_answer(t, d, answer_rng)} for t in train_tasks]
            val_rows = [{"prompt": t.prompt, "answer": t.gold()} for t in val_tasks]
        else:
            rows = (
                load_seed_file(d.path)
                if d.source == "jsonl"
                else load_hf_seed(d.hf_name, d.hf_split, d.hf_data_files, d.prompt_field, d.answer_field)
            )
            train_rows, val_rows = split_seed(rows, d.n_val, stage_seed(cfg.seed, "split"))
            train_rows = train_rows[: d.n_train]
        write_jsonl(train, train_rows)
        write_jsonl(val, val_rows)
        return {"n_train": len(train_rows), "n_val": len(val_rows)}

    source = file_digest(Path(d.path)) if d.source == "jsonl" and Path(d.path).is_file() else None
    if d.source == "jsonl" and source is None:
        raise UserError(
            f"data.path={d.path!r}: file not found. Give the seed JSONL (one {{'prompt', 'answer'}} "
            "object per line); relative paths are resolved against the launch directory."
        )
    settings = {"data": OmegaConf.to_container(d), "seed": cfg.seed, "source_digest": source}
    return run.stage("seed", settings, [train, val], fn)


def run(cfg: DictConfig) -> float:
    """Run the configured method end to end in ``cfg.run_dir``; return the final validation score."""
    from synpo.evaluation.suite import evaluate_groups
    from synpo.methods import get_method
    from synpo.modeling import resolve_model_path

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_libraries()
    run_dir = RunDir(Path(cfg.run_dir))
    check_compatible(run_dir, cfg)
    OmegaConf.save(OmegaConf.create(loggable_config(cfg)), run_dir.path("config.yaml"))
    tracker = make_tracker(cfg, run_dir.root)
    t_start = time.perf_counter()
    try:
        seed_record = prepare_seed(cfg, run_dir)
        ctx = Context(
            cfg=cfg,
            run=run_dir,
            generator=make_generator(cfg),
            scorer=make_scorer(cfg),
            pi0=resolve_model_path(cfg.model.name_or_path),
            seed_train=read_jsonl(run_dir.path("seed", "train.jsonl")),
            seed_val=read_jsonl(run_dir.path("seed", "val.jsonl")),
            seed_record=seed_record,
        )
        method = get_method(cfg.method.name)
        ev0 = ctx.record("eval", ctx.evaluate("iter_0/eval", ctx.pi0, run_dir.path("iter_0"), [seed_record], None))
        row0 = {"iteration": 0, **ev0.info, **evaluate_groups(ctx, 0, ctx.pi0, seed_record)}
        state = method.prepare(ctx, ev0.info)
        row0["seconds"] = dict(ctx.seconds)
        rows = [row0]
        tracker.log_iteration(0, row0)
        for t in range(1, cfg.method.iterations + 1):
            ctx.seconds = {}
            row, state, samples = method.iteration(ctx, t, state)
            row.update(evaluate_groups(ctx, t, state.policy, state.policy_record))
            row["seconds"] = dict(ctx.seconds)
            write_json(run_dir.path(f"iter_{t}", "metrics.json"), row)
            rows.append(row)
            tracker.log_iteration(t, row)
            if samples:
                tracker.log_table("sample_pairs", list(samples[0].keys()), [list(s.values()) for s in samples], t)
            log.info("iteration %d: %s", t, _summary(row))
        write_results(run_dir, cfg, rows, time.perf_counter() - t_start, method.COLUMNS)
        return float(rows[-1]["val_score"])
    finally:
        tracker.finish()


def _summary(row: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.items() if isinstance(v, (int, float, str)) and k != "iteration")


VALIDATION_COLUMNS = (
    "iteration",
    "val_score",
    "val_score_sampled",
    "val_exact",
    "val_win_rate",
    "val_win_rate_sampled",
)


def write_results(run: RunDir, cfg: DictConfig, rows: list[dict], seconds: float, method_columns: tuple) -> None:
    """``results.json``, ``results.md`` and ``plots/val_score.png``; the table is also logged."""
    write_json(run.path("results.json"), {"name": cfg.name, "iterations": rows, "wall_seconds": round(seconds, 1)})
    columns = VALIDATION_COLUMNS + tuple(method_columns)
    header = "| " + " | ".join(columns) + " | seconds |"
    lines = [f"# {cfg.name}", "", header, "|" + "---|" * (len(columns) + 1)]
    for r in rows:
        cells = [_fmt(r.get(c)) for c in columns]
        secs = ", ".join(f"{k} {v:.0f}" for k, v in r.get("seconds", {}).items())
        lines.append("| " + " | ".join(cells) + f" | {secs} |")
    table = "\n".join(lines) + "\n"
    atomic_write_text(run.path("results.md"), table)
    _plot(run, rows)
    log.info("results (%s):\n%s", run.path("results.md"), table)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2e}" if v and abs(v) < 0.01 else f"{v:.3f}"
    return str(v)


def _plot(run: RunDir, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    its = [r["iteration"] for r in rows]
    ax.plot(its, [r["val_score"] for r in rows], marker="o", label="greedy")
    if all("val_score_sampled" in r for r in rows):
        ax.plot(its, [r["val_score_sampled"] for r in rows], marker="s", label="sampled (T=0.7)")
    ax.set_xlabel("iteration (0 = SFT model)")
    ax.set_ylabel("validation score")
    ax.set_xticks(its)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = run.path("plots", "val_score.png")
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_name(".val_score.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, out)


def _quiet_libraries() -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
