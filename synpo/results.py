"""The run's results: ``results.json``, ``results.md`` (the table the README shows) and ``plots/val_score.png``."""

from __future__ import annotations

import logging
import os

from omegaconf import DictConfig

from synpo.artifacts import RunDir, atomic_write_text, write_json

log = logging.getLogger(__name__)

VALIDATION_COLUMNS = (
    "iteration",
    "val_score",
    "val_score_sampled",
    "val_exact",
    "val_win_rate",
    "val_win_rate_sampled",
)


def summary(row: dict) -> str:
    """One log line of an iteration's scalar results."""
    return ", ".join(f"{k}={v}" for k, v in row.items() if isinstance(v, (int, float, str)) and k != "iteration")


def write_results(rundir: RunDir, cfg: DictConfig, rows: list[dict], seconds: float, method) -> None:
    """``results.json``, ``results.md`` and ``plots/val_score.png``; the table is also logged. ``method`` gives the
    table's columns and whether the run's prompts had a source (``prompt_source`` is null where they had none)."""
    meta = {
        "method": cfg.method.name,
        "prompt_source": cfg.method.prompt_source if method.draws_prompts else None,
        "model": cfg.model.name,
        "seed": cfg.seed,
    }  # what the report groups runs by (seeds of one setting) and labels them with
    write_json(rundir.results_file, {"name": cfg.name, **meta, "iterations": rows, "wall_seconds": round(seconds, 1)})
    columns = VALIDATION_COLUMNS + tuple(method.columns)
    header = "| " + " | ".join(columns) + " | seconds |"
    lines = [f"# {cfg.name}", "", header, "|" + "---|" * (len(columns) + 1)]
    for r in rows:
        cells = [_fmt(r.get(c)) for c in columns]
        secs = ", ".join(f"{k} {v:.0f}" for k, v in r.get("seconds", {}).items())
        lines.append("| " + " | ".join(cells) + f" | {secs} |")
    table = "\n".join(lines) + "\n"
    atomic_write_text(rundir.path("results.md"), table)
    _plot(rundir, rows)
    log.info("results (%s):\n%s", rundir.path("results.md"), table)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2e}" if v and abs(v) < 0.01 else f"{v:.3f}"
    return str(v)


def _plot(rundir: RunDir, rows: list[dict]) -> None:
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
    out = rundir.path("plots", "val_score.png")
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_name(".val_score.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, out)
