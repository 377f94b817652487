"""Finished runs read back for the report: a run directory (results.json and its evaluation files, with official
judgments placed in ``iter_<t>/export/``), an offline W&B run file, or a synced W&B run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from synpo.artifacts import read_json
from synpo.errors import UserError
from synpo.tracking import offline_run_files


@dataclass
class LoadedRun:
    label: str
    source: str
    rows: list[dict]  # one per iteration, with "iteration"
    diversity: dict = field(default_factory=dict)  # iteration -> diversity.json (with the histogram)
    method: str | None = None  # None: not recorded (an older run, or a W&B source)
    prompt_source: str | None = None
    seed: int | None = None
    settings: dict = field(default_factory=dict)  # the run's config, flattened, without what a seed or a path is


# Config keys that do not make a different setting: the seed (the report averages over it), where the run lives,
# what is measured and logged, the topology; and every speed-only field (``synpo.config.speed_keys``).
NOT_A_SETTING = ("seed", "run_dir", "name", "logger.", "eval.", "launch.", "hydra.")


def run_settings(config_file: Path) -> dict:
    """``{dotted key: value}`` of a run's saved config, without the keys in ``NOT_A_SETTING``."""
    from omegaconf import OmegaConf

    if not config_file.is_file():
        return {}
    flat: dict = {}

    def walk(node, prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v

    from synpo.config import speed_keys

    try:
        saved = OmegaConf.to_container(OmegaConf.load(config_file))
        walk(saved, "")
        speed = speed_keys(saved)
    except Exception as e:  # YAML errors of several kinds, or a file that is not a mapping
        raise UserError(
            f"{config_file} cannot be read ({type(e).__name__}), so the report cannot tell this run's setting from "
            "the others'. Rerun the job with the same command to rewrite it, or leave the run out of the report."
        ) from None
    return {
        k: v for k, v in flat.items() if not k.startswith(NOT_A_SETTING) and k not in NOT_A_SETTING and k not in speed
    }


def run_label(name: str, method: str | None, prompt_source: str | None) -> str:
    """A run's label in the report: its name, plus the method where the name does not say it and the prompt source
    where it is not SynPO's generator. Runs that differ only in their seed share a label (the report averages them)."""
    label = name if not method or method in name else f"{name} ({method})"
    if prompt_source and prompt_source != "generator":  # null for a method whose prompts have no source
        label += f" [{prompt_source} prompts]"
    return label


# --- loading --------------------------------------------------------------------------------------------------------


def load_source(src: str) -> LoadedRun:
    if src.startswith("wandb:"):
        return _load_synced(src[len("wandb:") :])
    p = Path(src)
    if p.is_file() and p.suffix == ".wandb":
        return _load_offline(p)
    if (p / "results.json").is_file():
        return _load_run_dir(p)
    files = offline_run_files(p)
    if files:
        return _load_offline(files[-1])
    raise UserError(
        f"{src}: not a finished run directory (no results.json), an offline W&B run (run-*.wandb, or a directory "
        "with wandb/offline-run-*), or wandb:<entity>/<project>/<run id>. Finish or resume the run with the same "
        "`python run.py ...` command, or point at its W&B files."
    )


def _load_run_dir(p: Path) -> LoadedRun:
    from synpo.results import results_problems

    file = p / "results.json"
    try:
        results = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f":{e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        raise UserError(f"{file}{where}: not valid JSON ({e}); rerun the job to rewrite it") from None
    if problems := results_problems(results):
        raise UserError(
            f"{file} is not a results file as synpo writes it: "
            + "; ".join(problems[:5])
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
            + ". Rerun the job with the same `python run.py ...` command to rewrite it, or leave the run out."
        )
    if not results.get("iterations"):
        raise UserError(
            f"{file} holds no iterations: the run has not finished one. Resume it with the same "
            "`python run.py ...` command, or leave it out of the report."
        )
    rows = [dict(r) for r in results["iterations"]]
    diversity = {}
    for r in rows:
        t = r["iteration"]
        d = p / f"iter_{t}" / "evals" / "diversity.json"
        if d.is_file():
            diversity[t] = read_json(d)
        r.update(_official_judgments(p, results["name"], t))
    name, method, source = results.get("name", p.name), results.get("method"), results.get("prompt_source")
    label = run_label(name, method, source)
    return LoadedRun(
        label, str(p), rows, diversity, method, source, results.get("seed"), run_settings(p / "config.yaml")
    )


def _official_judgments(run_dir: Path, name: str, t: int) -> dict:
    """Numbers from the official tools' judgments a user put back into iter_<t>/export/."""
    from synpo.evaluation import exports

    model = exports.export_model_name(name, t)
    root = run_dir / f"iter_{t}" / "export"
    out: dict = {}
    ann = root / "alpaca_eval" / "annotations.json"
    if ann.is_file():
        out.update(exports.read_alpaca_eval_annotations(ann, model, n_boot=1000))
    for f in sorted(root.glob(f"arena_hard/model_judgment/*/{model}.jsonl")):
        out.update(exports.read_arena_hard_judgments(f))
    for f in sorted(root.glob("mt_bench/model_judgment/*single*.jsonl")):
        out.update(exports.read_mt_bench_judgments(f, model))
    return out


def _rows_from_history(history: list[dict]) -> list[dict]:
    by_step: dict[int, dict] = {}
    for h in history:
        by_step.setdefault(int(h["_step"]), {}).update({k: v for k, v in h.items() if not k.startswith("_")})
    return [{"iteration": s, **r} for s, r in sorted(by_step.items())]


def _load_offline(f: Path) -> LoadedRun:
    from synpo.tracking import read_offline_history

    return LoadedRun(f.parent.name, str(f), _rows_from_history(read_offline_history(f)))


def _load_synced(path: str) -> LoadedRun:
    try:
        import wandb

        api_run = wandb.Api().run(path)
        history = [dict(h) for h in api_run.scan_history()]
    except Exception as e:  # network, auth or a wrong path: one readable paragraph
        raise UserError(
            f"Could not read the synced W&B run {path!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
            "It needs network access and WANDB_API_KEY; offline runs can be given as files instead."
        ) from None
    return LoadedRun(api_run.name, f"wandb:{path}", _rows_from_history(history))
