"""``python -m synpo.report <run dir | W&B run> ... --out <dir>``: the paper's tables from finished runs.

Builds, in Markdown (report.md) and LaTeX (report.tex), with per-iteration plots (PNG):

- **Table 2**: the run's own validation, AlpacaEval 2.0 (LC and raw win rate), Arena-Hard, MT-Bench per iteration,
  for SynPO, the baselines and SPIN. Official judgments placed in ``iter_<t>/export/`` (alpaca_eval's
  annotations.json, Arena-Hard's model_judgment/, MT-Bench's model_judgment/*single*.jsonl) take precedence;
  otherwise the run's own win rates (``eval=winrate``: its scorer or LLM judge against the reference answers) fill
  the AlpacaEval columns, marked as such. **Table 3**: MT-Bench by turn.
- **Table 4**: the Open LLM leaderboard (``eval=openllm``). **Table 5**: the six further harness tasks
  (``eval=harness6``). Other suites (the tiny world's) get a table of their own.
- **Table 6**: the prompt source (``method.prompt_source``). **Table 7**: the seed ablations (``method=seed_*``).
- **Figure 5**: prompt diversity (``eval=diversity``) and the plot of pairwise prompt similarity.

Runs of one setting that differ only in their seed are averaged, with a 95% interval across seeds
(``synpo.tables``).

A source is a run directory (results.json), an offline W&B run (a ``run-*.wandb`` file or a directory holding
``wandb/offline-run-*``), or a synced run ``wandb:<entity>/<project>/<run id>`` (needs network and a key). The
paper's published rows (experiments/paper/synpo_published.yaml, with their source) are printed beside ours.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from synpo.errors import UserError
from synpo.sources import LoadedRun, load_source
from synpo.tables import (
    HARNESS6,
    OPENLLM,
    diversity_table,
    group_runs,
    other_suites,
    suite_table,
    table2,
    table3,
    table6,
    table7,
)

log = logging.getLogger(__name__)
PAPER_FILE = Path(__file__).resolve().parents[1] / "experiments" / "paper" / "synpo_published.yaml"


def markdown(title: str, header: list[str], rows: list[list[str]], notes: list[str]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines + [""] + notes + [""])


def latex(title: str, header: list[str], rows: list[list[str]], notes: list[str]) -> str:
    def esc(s: str) -> str:
        s = s.replace("\\", "\\textbackslash{}")
        for a, b in (("&", "\\&"), ("%", "\\%"), ("_", "\\_"), ("#", "\\#"), ("±", "$\\pm$"), ("–", "--")):
            s = s.replace(a, b)
        return s.replace("↓", "$\\downarrow$").replace("↑", "$\\uparrow$")

    body = [" & ".join(esc(c) for c in r) + " \\\\" for r in rows]
    return "\n".join(
        [
            "\\begin{table}[t]\\centering\\small",
            f"\\caption{{{esc(title)}}}",
            "\\begin{tabular}{" + "l" * 2 + "r" * (len(header) - 2) + "}",
            "\\toprule",
            " & ".join(esc(h) for h in header) + " \\\\",
            "\\midrule",
            *body,
            "\\bottomrule",
            "\\end{tabular}",
            *([f"\\\\[2pt]\\footnotesize {esc(n)}" for n in notes]),
            "\\end{table}",
            "",
        ]
    )


# --- plots ------------------------------------------------------------------------------------------------------------


def plot_metric(runs: list[LoadedRun], keys: list[tuple[str, str, str | None]], ylabel: str, out: Path) -> bool:
    """One line per run and key (key, label, standard-error key); False when no run has the metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    drawn = False
    for run in runs:
        for key, label, se_key in keys:
            pts = [
                (r["iteration"], r[key], r.get(se_key) if se_key else None) for r in run.rows if r.get(key) is not None
            ]
            if not pts:
                continue
            xs, ys, ses = zip(*pts, strict=True)
            err = [0 if s is None else 1.96 * s for s in ses]
            ax.errorbar(xs, ys, yerr=err if any(err) else None, marker="o", capsize=3, label=f"{run.label}: {label}")
            drawn = True
    if drawn:
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out, dpi=120)
    plt.close(fig)
    return drawn


def _plots(runs: list[LoadedRun], out_dir: Path) -> list[str]:
    """The report's plots (PNG files in ``out_dir``) that the runs have data for."""
    from synpo.evaluation.diversity import plot_similarity

    plots = []
    if plot_metric(
        runs,
        [
            ("wr_length_controlled_winrate", "LC win rate", "wr_lc_standard_error"),
            ("wr_win_rate", "win rate", "wr_standard_error"),
        ],
        "win rate vs reference (%)",
        out_dir / "win_rates.png",
    ):
        plots.append("win_rates.png")
    lm_keys = sorted(
        {k for run in runs for r in run.rows for k in r if k.startswith("lm_") and k.endswith("_average")}
    )
    if plot_metric(runs, [(k, k[3:], None) for k in lm_keys], "suite average", out_dir / "lm_eval.png"):
        plots.append("lm_eval.png")
    if plot_metric(
        runs, [("div_mean_cosine", "mean cosine", None)], "inter-prompt similarity", out_dir / "diversity.png"
    ):
        plots.append("diversity.png")
    hists = {
        f"{run.label}: {d.get('label', t)}": d["histogram"] for run in runs for t, d in sorted(run.diversity.items())
    }
    if hists:
        plot_similarity(hists, out_dir / "figure5_similarity.png", "Pairwise prompt similarity (paper Figure 5)")
        plots.append("figure5_similarity.png")
    if plot_metric(runs, [("val_score", "val_score", None)], "validation score", out_dir / "val_score.png"):
        plots.append("val_score.png")
    return plots


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: a file is there; give a directory for report.md, report.tex and plots")


def build(sources: list[str], out_dir: Path, paper_file: Path | None = PAPER_FILE) -> Path:
    _check_out_dir(out_dir)
    runs = [load_source(s) for s in sources]
    paper = yaml.safe_load(paper_file.read_text(encoding="utf-8")) if paper_file and paper_file.is_file() else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    sections = [
        (
            "Table 2: instruction following (AlpacaEval 2.0, Arena-Hard, MT-Bench), with the baselines",
            table2(groups, paper),
        ),
        ("Table 3: MT-Bench by turn", table3(groups, paper)),
        ("Table 4: Open LLM leaderboard", suite_table(groups, "openllm", OPENLLM, paper, "table4")),
        ("Table 5: six more LLM Harness tasks (5-shot)", suite_table(groups, "harness6", HARNESS6, paper, "table5")),
        ("Table 6: prompt source (one iteration)", table6(groups, paper)),
        ("Table 7: seed-data ablations", table7(groups, paper)),
    ]
    for name, table in other_suites(groups).items():
        sections.append((f"lm-eval suite {name}", table))
    sections.append(("Figure 5: prompt diversity (all-MiniLM-L6-v2)", diversity_table(groups, paper)))

    plots = _plots(runs, out_dir)

    source_line = f"Sources: {', '.join(r.source for r in runs)}."
    paper_line = ""
    if paper:
        paper_line = f'Paper rows ("paper: ..."): {paper.get("source", "?")}. {paper.get("note", "")}'.strip()
    md = ["# synpo report", "", source_line, "", paper_line, ""]
    tex = ["% synpo report: \\usepackage{booktabs}", f"% {source_line}", ""]
    for title, (header, rows, notes) in sections:
        if not rows:
            md.append(f"### {title}\n\nNo run has these metrics (enable the eval group).\n")
            continue
        md.append(markdown(title, header, rows, notes))
        tex.append(latex(title, header, rows, notes))
    md += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    (out_dir / "report.md").write_text("\n".join(md), encoding="utf-8")
    (out_dir / "report.tex").write_text("\n".join(tex), encoding="utf-8")
    return out_dir / "report.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synpo.report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "sources", nargs="+", help="run directories, offline W&B runs, or wandb:<entity>/<project>/<id>"
    )
    parser.add_argument("--out", default="report", help="output directory (default: ./report)")
    parser.add_argument("--paper", default=str(PAPER_FILE), help="the paper's published rows (YAML); 'none' to omit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = build(args.sources, Path(args.out), None if args.paper == "none" else Path(args.paper))
    except UserError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    sys.stdout.write(f"wrote {path} and its plots\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
