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


# results.json, as ``write_results`` writes it and the report reads it: the one schema of both. Each top-level field
# with the types it may hold; each iteration row has an ``iteration`` number, and its other values are numbers,
# booleans, nulls (the table's cells) or objects (per-beta candidates, seconds and compute per stage).
RESULTS_FIELDS = {
    "name": (str,),
    "method": (str, type(None)),
    "prompt_source": (str, type(None)),
    "model": (str, type(None)),
    "seed": (int, type(None)),
    "wall_seconds": (int, float, type(None)),
    "iterations": (list,),
    "generation": (dict, type(None)),  # backend, its version, sampling (pipeline.generation_record)
}
_CELL = (int, float, bool, type(None), dict)


def _kind(v) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(v), type(v).__name__)


def results_problems(data) -> list[str]:
    """Where ``data`` (a parsed results.json) departs from the schema, one entry per field: its path and what it
    holds."""
    if not isinstance(data, dict):
        return [f"the file holds {_kind(data)}, not an object"]
    p = [
        f"{k} is {_kind(data[k])}, not {' or '.join(t.__name__ for t in kinds)}"
        for k, kinds in RESULTS_FIELDS.items()
        if k in data and (not isinstance(data[k], kinds) or (isinstance(data[k], bool) and bool not in kinds))
    ]
    if "name" not in data:
        p.append("name is missing")
    rows = data.get("iterations")
    for i, r in enumerate(rows if isinstance(rows, list) else []):
        if not isinstance(r, dict):
            p.append(f"iterations[{i}] is {_kind(r)}, not an object")
            continue
        t = r.get("iteration")
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            p.append(f"iterations[{i}].iteration is {t!r}, not an iteration number (0, 1, ...)")
        p += [
            f"iterations[{i}].{k} is {_kind(v)} ({v!r:.40}), not a number"
            for k, v in r.items()
            if k != "iteration" and not isinstance(v, _CELL)
        ]
    return p


def write_results(
    rundir: RunDir, cfg: DictConfig, rows: list[dict], seconds: float, method, generation: dict | None = None
) -> None:
    """``results.json``, ``results.md`` and ``plots/val_score.png``; the table is also logged. ``method`` gives the
    table's columns and whether the run's prompts had a source (``prompt_source`` is null where they had none);
    ``generation``: the backend, its version and the sampling settings (``pipeline.generation_record``)."""
    meta = {
        "method": cfg.method.name,
        "prompt_source": cfg.method.prompt_source if method.draws_prompts else None,
        "model": cfg.model.name,
        "seed": cfg.seed,
    }  # what the report groups runs by (seeds of one setting) and labels them with
    results = {"name": cfg.name, **meta, "iterations": rows, "wall_seconds": round(seconds, 1)}
    write_json(rundir.results_file, {**results, **({"generation": generation} if generation else {})})
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
    _plot_candidates(rundir, rows, cfg.trainer.select_on)
    log.info("results (%s):\n%s", rundir.path("results.md"), table)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2e}" if v and abs(v) < 0.01 else f"{v:.3f}"
    return str(v)


def _save(fig, out) -> None:
    """``fig`` to ``out`` through a temporary name (a reader never sees half a PNG)."""
    import matplotlib.pyplot as plt

    out.parent.mkdir(exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, out)


def _plot_candidates(rundir: RunDir, rows: list[dict], key: str) -> None:
    """``plots/candidates.png``: every beta candidate's selection metric per iteration, the selected one starred,
    pi_0's value as a line; and ``plots/pairs.png``: pairs kept per iteration and |D| (methods that report them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if any(r.get("per_beta") for r in rows):
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for r in rows[1:]:
            for c in (r.get("per_beta") or {}).values():
                chosen = c.get("beta") == r.get("beta")
                ax.scatter(
                    r["iteration"],
                    c.get(key),
                    marker="*" if chosen else "o",
                    s=120 if chosen else 25,
                    color="tab:red" if chosen else "tab:gray",
                    zorder=3 if chosen else 2,
                )
        ax.axhline(rows[0].get(key, float("nan")), color="tab:blue", lw=1, label=f"pi_0 {key}")
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"{key} (star: selected beta)")
        ax.set_xticks([r["iteration"] for r in rows[1:]])
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        _save(fig, rundir.path("plots", "candidates.png"))
    if any("n_pairs_kept" in r for r in rows):
        fig, ax = plt.subplots(figsize=(5, 3.2))
        kept = [r for r in rows if "n_pairs_kept" in r]
        its = [r["iteration"] for r in kept]
        ax.bar(its, [r["n_pairs_kept"] for r in kept], label="pairs kept", alpha=0.6)
        ax.plot(its, [r.get("d_size") for r in kept], marker="o", color="k", label="|D|")
        ax.set_xlabel("iteration")
        ax.set_ylabel("pairs")
        ax.set_xticks(its)
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
        if all(r.get("keep_ratio") is not None for r in kept):
            ratio = ax.twinx()
            ratio.plot(its, [r["keep_ratio"] for r in kept], marker="s", color="tab:red", label="keep ratio")
            ratio.set_ylim(0, 1.05)
            ratio.set_ylabel("keep ratio (kept / scored)")
            ratio.legend(loc="upper right")
        fig.tight_layout()
        _save(fig, rundir.path("plots", "pairs.png"))
    _plot_content_form(rundir, rows)


def _plot_content_form(rundir: RunDir, rows: list[dict]) -> None:
    """``plots/content_form.png``, where the scorer's score has a content part and a form part (the verifier): each
    iteration's mean greedy validation content against form, the selected models joined in order, every beta
    candidate as a grey dot. A model that gains form and loses content moves right and down."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not all("val_content" in r and "val_form" in r for r in rows):
        return
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for r in rows[1:]:
        cands = [c for c in (r.get("per_beta") or {}).values() if "val_content" in c]
        ax.scatter([c["val_form"] for c in cands], [c["val_content"] for c in cands], s=18, color="tab:gray")
    ax.plot([r["val_form"] for r in rows], [r["val_content"] for r in rows], marker="o", color="tab:blue")
    for r in rows:
        ax.annotate(str(r["iteration"]), (r["val_form"], r["val_content"]), xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("form (mean over validation, greedy)")
    ax.set_ylabel("content (mean, partial credit)")
    ax.set_title("content against form (number: iteration; grey: beta candidates)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, rundir.path("plots", "content_form.png"))


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
    _save(fig, rundir.path("plots", "val_score.png"))
