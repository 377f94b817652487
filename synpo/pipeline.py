"""The iteration loop: open the run directory, prepare the seed split, validate pi_0, run T iterations of the
configured method, and write the results. Every heavy step is a resumable stage (``synpo.stages``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from synpo.artifacts import METRICS, RunDir, atomic_write_text, read_jsonl, write_json
from synpo.config import IDENTITY_KEYS, require_gpu_if_meant, tiny_world_values
from synpo.data import prepare_seed
from synpo.errors import UserError
from synpo.evaluation.groups import evaluate_groups
from synpo.evaluation.validation import validation_stage
from synpo.generation.config import make_generator
from synpo.methods import Iteration, get_method
from synpo.modeling import resolve_model_path
from synpo.results import summary, write_results
from synpo.scoring import make_scorer
from synpo.stages import Context, RunSettings
from synpo.tracking import loggable_config, make_tracker
from synpo.training.preemption import Preempted

log = logging.getLogger(__name__)


def check_compatible(rundir: RunDir, cfg: DictConfig) -> None:
    """Refuse a run directory that holds a run with another identity (model, data, method or seed)."""
    if not rundir.config_file.is_file():
        return
    saved = _saved_config(rundir)
    clashes = []
    for key in IDENTITY_KEYS:
        old, new = OmegaConf.select(saved, key), OmegaConf.select(cfg, key)
        if old != new:
            clashes.append(f"{key}: the directory has {old!r}, this command asks for {new!r}")
    if clashes:
        raise UserError(
            f"The run directory {rundir.root} was created by an incompatible config:\n  - "
            + "\n  - ".join(clashes)
            + "\nResuming would mix two runs. Choose another directory with run_dir=<path> (or name=<label>), or "
            "delete that directory to start over. Other keys (thresholds, beta grid, counts) may change: the stages "
            "they affect are redone."
        )


def _saved_config(rundir: RunDir) -> DictConfig:
    """The run directory's own config.yaml; a corrupt one is reported with the repair that keeps the finished work."""
    try:
        saved = OmegaConf.load(rundir.config_file)
        if not isinstance(saved, DictConfig):
            raise ValueError(f"it holds a {type(saved).__name__}, not a mapping of config keys")
        return saved
    except Exception as e:  # YAML errors of several kinds, a mapping of the wrong type
        raise UserError(
            f"{rundir.config_file} cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}), "
            "so this run's identity (model, data, method, seed) cannot be checked. The finished stages are intact "
            f"(their records are in {rundir.markers}). To resume, delete only config.yaml and rerun the same command: "
            "it is written again, and any stage whose settings differ from its record is redone."
        ) from None


def save_config(rundir: RunDir, cfg: DictConfig) -> None:
    """The resolved config (secrets redacted), written atomically: a crash leaves the old file or the new one."""
    atomic_write_text(rundir.config_file, OmegaConf.to_yaml(OmegaConf.create(loggable_config(cfg))))


def open_context(cfg: DictConfig, rundir: RunDir) -> Context:
    """The seed split (a stage) and the run's components."""
    seed_record = prepare_seed(cfg.data, cfg.seed, rundir)
    train, val = rundir.seed_files
    return Context(
        run=RunSettings.of(cfg),
        rundir=rundir,
        generator=make_generator(cfg.generator, cfg.model),
        scorer=make_scorer(cfg.scorer, cfg.seed),
        pi0=resolve_model_path(cfg.model.name_or_path),
        seed_train=read_jsonl(train),
        seed_val=read_jsonl(val),
        seed_record=seed_record,
    )


def generation_record(ctx: Context) -> dict:
    """How this run's answers are generated: the backend, its packages' versions and the sampling settings (results
    and W&B carry it: HF and vLLM sampling give different SPIN results, uclaml/SPIN#36)."""
    g = ctx.run.generator
    keys = ("backend", "temperature", "top_p", "max_new_tokens")
    return {**{k: g[k] for k in keys}, "version": ctx.generator.version()}


def run(cfg: DictConfig) -> float:
    """Run the configured method end to end in ``cfg.run_dir``; return the final validation score."""
    _before_any_work(cfg)
    rundir = RunDir(Path(cfg.run_dir))
    check_compatible(rundir, cfg)
    save_config(rundir, cfg)
    tracker = make_tracker(cfg, rundir.root)
    started = time.perf_counter()
    try:
        ctx = open_context(cfg, rundir)
        generation = generation_record(ctx)
        tracker.add_config({"generation": generation})
        method = get_method(cfg.method.name)
        ev0 = validation_stage(ctx, rundir.iter_stage(0, "eval"), ctx.pi0, rundir.iter_dir(0), [ctx.seed_record], None)
        row0 = {"iteration": 0, **ev0.info, **evaluate_groups(ctx, 0, ctx.pi0, ctx.seed_record, None)}
        state = method.prepare(ctx, ev0.info)
        row0.update(ctx.stats.take())
        rows = [row0]
        tracker.log_iteration(0, row0)
        for t in range(1, cfg.method.iterations + 1):
            result: Iteration = method.iteration(ctx, t, state)
            state, row = result.state, result.row
            row.update(evaluate_groups(ctx, t, result.policy, result.policy_record, result.prompts_file))
            row.update(ctx.stats.take())
            write_json(rundir.iter_file(t, METRICS), row)
            rows.append(row)
            tracker.log_iteration(t, row)
            if result.samples_file is not None:
                _log_samples(tracker, result, cfg.logger.n_sample_pairs, t)
            if row.get("per_beta"):
                _log_candidates(tracker, row, t)
            log.info("iteration %d: %s", t, summary(row))
        write_results(rundir, cfg, rows, time.perf_counter() - started, method, generation)
        return float(rows[-1]["val_score"])
    except (UserError, Preempted):
        raise
    except Exception:
        log.error(
            "The run stopped on an unexpected error (traceback below). Every finished stage is kept in %s: "
            "rerun the same command to resume from there.",
            rundir.root,
        )
        raise
    finally:
        tracker.finish()


def _log_samples(tracker, result: Iteration, n: int, t: int) -> None:
    """The first ``n`` of the iteration's pairs as W&B's sample table (the loop, not the method, decides how many)."""
    from itertools import islice

    from synpo.artifacts import iter_jsonl

    rows = [row for _, row in islice(iter_jsonl(result.samples_file), n)]
    if rows:
        columns = list(result.sample_fields)
        tracker.log_table("sample_pairs", columns, [[r.get(k) for k in columns] for r in rows], t)


CANDIDATE_COLUMNS = (
    "beta",
    "gamma",
    "val_score",
    "val_score_sampled",
    "val_exact",
    "val_content",
    "val_form",
    "val_win_rate",
    "train_loss",
)


def _log_candidates(tracker, row: dict, t: int) -> None:
    """Every beta candidate's validation metrics, the selected one marked: W&B's selection table."""
    columns = ["candidate", *CANDIDATE_COLUMNS, "selected"]
    rows = [
        [name, *(c.get(k) for k in CANDIDATE_COLUMNS), c.get("beta") == row.get("beta")]
        for name, c in row["per_beta"].items()
    ]
    tracker.log_table("beta_candidates", columns, rows, t)


def _before_any_work(cfg: DictConfig) -> None:
    """Quiet the libraries, stop a run that means GPUs on a machine without one, warn of tiny-world values."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_libraries()
    require_gpu_if_meant(cfg)
    if cfg.launch.launcher == "accelerate" and (cfg.launch.srun or cfg.launch.num_machines > 1):
        from synpo.training.launch import allocation_problem

        if problem := allocation_problem(cfg.launch.num_machines):
            raise UserError(problem)
    if stale := tiny_world_values(cfg):
        log.warning(
            "model.name_or_path=%s keeps values sized for the tiny world's 1M-parameter model: %s. Set ones that "
            "suit this model (the experiment files for real models show them).",
            cfg.model.name_or_path,
            ", ".join(stale),
        )


def _quiet_libraries() -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
