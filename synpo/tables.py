"""The paper's tables from finished runs, ours beside the published rows (``python -m synpo.report`` prints them).

Runs that differ only in their seed share a label (``synpo.sources.run_label``) and form one row per iteration: the
mean over the seeds with its 95% t-interval across them, and the number of seeds (``n``). A single run's cell keeps
its own error bar (a bootstrap interval or a standard error) where it has one. A published row prints ``n/p`` for a
cell the paper does not publish, and our own columns the paper has no counterpart for stay empty.

- **Table 2**: every run but the ablations (Tables 6 and 7), per iteration: the run's own validation (the tiny
  world's metric), AlpacaEval 2.0 LC and WR, Arena-Hard and MT-Bench; the paper's SFT, Manual, SynPO and baselines.
- **Table 3**: MT-Bench, turn 1 and turn 2. **Tables 4 and 5**: the lm-eval suites.
- **Table 6**: the prompt source, first iteration. **Table 7**: the seed ablations beside SynPO's last iteration.
- **Figure 5**: the prompt diversity of each source (the paper prints no numbers for it).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from synpo.sources import LoadedRun

OPENLLM = [
    ("arc_challenge", "ARC"),
    ("hellaswag", "HellaSwag"),
    ("truthfulqa_mc2", "TruthfulQA"),
    ("mmlu", "MMLU"),
    ("winogrande", "Winogrande"),
    ("gsm8k", "GSM8k"),
]
HARNESS6 = [
    ("openbookqa", "OpenBookQA"),
    ("haerae", "HAE-RAE"),
    ("mathqa", "MathQA"),
    ("xnli", "XNLI"),
    ("toxigen", "ToxiGen"),
    ("prost", "PROST"),
]
SEED_ABLATIONS = ("seed_sft", "seed_po", "seed_sft_po")
NOT_PUBLISHED = "n/p"

Table = tuple[list[str], list[list[str]], list[str]]


def t_975(df: int) -> float:
    """Student's t quantile at 0.975 for ``df`` degrees of freedom: the half-width of a 95% interval in standard
    errors (12.706 for 2 seeds, 4.303 for 3; 1.96 as df grows)."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


@dataclass
class Group:
    """The runs of one setting (one per seed)."""

    label: str
    runs: list[LoadedRun]

    @property
    def method(self) -> str | None:
        return self.runs[0].method

    @property
    def prompt_source(self) -> str | None:
        return self.runs[0].prompt_source

    def iterations(self) -> list[int]:
        return sorted({r["iteration"] for run in self.runs for r in run.rows})

    def at(self, t: int) -> list[dict]:
        """Each seed's row of iteration ``t`` (-1: each seed's last iteration)."""
        out = []
        for run in self.runs:
            rows = [r for r in run.rows if t in (-1, r["iteration"])]
            if rows:
                out.append(rows[-1])
        return out


def group_runs(runs: list[LoadedRun]) -> list[Group]:
    """One group per setting: runs with one label and the same config but for the seed (``LoadedRun.settings``).
    Where settings share a label (a one-iteration run of Table 6 beside Table 2's four), each label is followed by
    the keys that tell them apart, ``tiny_synpo [method.iterations=1]``."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        key = (run.label, tuple(sorted((k, repr(v)) for k, v in run.settings.items())))
        groups.setdefault(key, Group(run.label, [])).runs.append(run)
    by_label: dict[str, list[Group]] = {}
    for g in groups.values():
        by_label.setdefault(g.label, []).append(g)
    for label, same in by_label.items():
        if len(same) > 1:
            keys = sorted({k for g in same for k in g.runs[0].settings})
            differ = [k for k in keys if len({repr(g.runs[0].settings.get(k)) for g in same}) > 1]
            for g in same:
                g.label = f"{label} [{', '.join(f'{k}={g.runs[0].settings.get(k)}' for k in differ)}]"
    return list(groups.values())


def fmt(v, scale: float = 1.0, se=None, ci=None, digits: int = 1) -> str:
    """A value with its error bar: the 95% interval when there is one, else ± the standard error."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    s = f"{v * scale:.{digits}f}"
    if ci is not None and None not in ci:
        return s + f" [{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"
    return s + (f" ± {se * scale:.{digits}f}" if se is not None and not math.isnan(se) else "")


def cell(rows: list[dict], key: str, scale: float = 1.0, digits: int = 1, se: str | None = None, ci=None) -> str:
    """One table cell over a group's seeds: a single run with its own error bar, several as mean [95% t-interval]."""
    values = [r[key] for r in rows if r.get(key) is not None]
    if len(values) == 1:
        r = next(r for r in rows if r.get(key) is not None)
        own_ci = (r.get(ci[0]), r.get(ci[1])) if ci else None
        return fmt(values[0], scale, r.get(se) if se else None, own_ci, digits)
    if not values:
        return "–"
    m = statistics.fmean(values)
    half = t_975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return fmt(m, scale, ci=(m - half, m + half), digits=digits)


def paper_rows(paper: dict, key: str, columns: list[str | None], lead: int = 2) -> list[list[str]]:
    """The published rows of ``paper``'s table ``key``, one cell per column (None: a column of ours only, left
    empty; a published column's missing cell: n/p)."""
    table = (paper.get("tables") or {}).get(key)
    if not table:
        return []
    out = []
    for row in table["rows"]:
        values = row.get("values") or {}
        cells = []
        for c in columns:
            if c is None:
                cells.append("")
            else:
                v = values.get(c)
                cells.append(NOT_PUBLISHED if v is None else str(v))  # as transcribed: 34.0 stays 34.0
        it = row.get("iteration")
        out.append([f"paper: {row['setting']}", "" if it is None else str(it), *[""] * (lead - 2), *cells])
    return out


def _own_winrate(rows: list[dict]) -> bool:
    return any("wr_win_rate" in r and "alpaca_win_rate" not in r for r in rows)


def _alpaca_cells(rows: list[dict]) -> list[str]:
    """AlpacaEval LC and WR: the official annotations' numbers where a run has them, else the run's own win rates."""
    p = "alpaca_" if any("alpaca_win_rate" in r for r in rows) else "wr_"
    lc = cell(
        rows, p + "length_controlled_winrate", se=p + "lc_standard_error", ci=(p + "lc_ci_low", p + "lc_ci_high")
    )
    wr = cell(rows, p + "win_rate", se=p + "standard_error", ci=(p + "ci_low", p + "ci_high"))
    return [lc, wr]


def _validation_cells(rows: list[dict]) -> list[str]:
    return [cell(rows, "val_score", digits=3), cell(rows, "val_exact", digits=3), cell(rows, "val_win_rate", digits=3)]


VALIDATION_HEADER = ["val score", "val exact", "val win rate"]


def table2(groups: list[Group], paper: dict) -> Table:
    header = ["Run", "Iter", "n", *VALIDATION_HEADER, "AE2 LC (%)", "AE2 WR (%)", "Arena-Hard (%)", "MT-Bench"]
    rows, notes = [], []
    for g in groups:
        if g.method in SEED_ABLATIONS or g.prompt_source not in (None, "generator"):
            continue  # Tables 7 and 6
        for t in g.iterations():
            at = g.at(t)
            mark = "*" if _own_winrate(at) else ""
            if mark and g.label not in notes:
                notes.append(g.label)
            rows.append(
                [g.label + mark, str(t), str(len(at)), *_validation_cells(at), *_alpaca_cells(at)]
                + [cell(at, "arena_win_rate", se="arena_standard_error"), cell(at, "mt_bench_score")]
            )
    rows += paper_rows(paper, "table2", [None, None, None, None, "alpaca_lc", "alpaca_wr", "arena_hard", "mt_bench"])
    foot = [
        f"* {', '.join(notes)}: AlpacaEval columns are the run's own win rates against the reference answers "
        "(eval=winrate; its scorer, not GPT-4 Turbo)."
        if notes
        else "",
        "n: seeds. Error bars: several seeds, mean [95% t-interval over seeds]; one run, its [95% bootstrap interval] "
        f"or ± standard error. Validation columns are the run's own scorer on held-out seed prompts. {NOT_PUBLISHED}: "
        "not published in the paper.",
        *_lc_sources(groups),
    ]
    return header, rows, [f for f in foot if f]


def _lc_sources(groups: list[Group]) -> list[str]:
    """Which length-controlled model gave each official AlpacaEval LC (``exports.alpaca_lc``), where not all
    alpaca_eval's own."""
    used = sorted({r["alpaca_lc_glm"] for g in groups for run in g.runs for r in run.rows if "alpaca_lc_glm" in r})
    if used in ([], ["alpaca_eval length_controlled_v1"]):
        return []
    return [f"AE2 LC computed by: {'; '.join(used)}."]


def table3(groups: list[Group], paper: dict) -> Table:
    header = ["Run", "Iter", "n", "MT-Bench turn 1", "MT-Bench turn 2", "MT-Bench"]
    rows = []
    for g in groups:
        for t in g.iterations():
            at = g.at(t)
            if any("mt_bench_score" in r for r in at):
                keys = ("mt_bench_turn_1", "mt_bench_turn_2", "mt_bench_score")
                rows.append([g.label, str(t), str(len(at)), *[cell(at, k, digits=2) for k in keys]])
    rows += paper_rows(paper, "table3", [None, "turn_1", "turn_2", "average"])
    return header, rows, []


def suite_table(groups: list[Group], suite: str, tasks: list[tuple[str, str]], paper: dict, key: str) -> Table:
    header = ["Run", "Iter", "n"] + [name for _, name in tasks] + ["Avg"]
    rows = []
    for g in groups:
        for t in g.iterations():
            at = g.at(t)
            if not any(f"lm_{suite}_{task}" in r for r in at for task, _ in tasks):
                continue
            keys = [f"lm_{suite}_{task}" for task, _ in tasks] + [f"lm_{suite}_average"]
            rows.append([g.label, str(t), str(len(at))] + [cell(at, k, 100) for k in keys])
    rows += paper_rows(paper, key, [None] + [task for task, _ in tasks] + ["average"]) if key else []
    return header, rows, []


def other_suites(groups: list[Group]) -> dict[str, Table]:
    """Tables for lm-eval suites that are not the paper's (e.g. the tiny world's)."""
    suites: dict[str, list[str]] = {}
    for g in groups:
        for run in g.runs:
            for r in run.rows:
                for k in r:
                    name = k[3 : -len("_average")] if k.startswith("lm_") and k.endswith("_average") else None
                    if name and name not in ("openllm", "harness6"):
                        prefix = f"lm_{name}_"
                        tasks = sorted(x[len(prefix) :] for x in r if x.startswith(prefix) and x != k)
                        suites.setdefault(name, tasks)
    return {name: suite_table(groups, name, [(t, t) for t in tasks], {}, "") for name, tasks in suites.items()}


def table6(groups: list[Group], paper: dict) -> Table:
    header = ["Prompts from", "Iter", "n", *VALIDATION_HEADER, "AE2 LC (%)", "AE2 WR (%)", "prompts kept", "mean cos"]
    rows = []
    sources = [g for g in groups if g.method == "synpo" and g.prompt_source]
    if len({g.prompt_source for g in sources}) > 1:  # a comparison of sources, not one run
        for g in sources:
            at = g.at(1)
            if at:
                extra = [cell(at, "n_prompts", digits=0), cell(at, "div_mean_cosine", digits=3)]
                rows.append([g.label, "1", str(len(at)), *_validation_cells(at), *_alpaca_cells(at), *extra])
    if rows:
        rows += paper_rows(paper, "table6", [None, None, None, None, "alpaca_lc", "alpaca_wr", None, None])
    return header, rows, ["One iteration from pi_0 with each prompt source; the paper's rows are Llama3-Base."]


def table7(groups: list[Group], paper: dict) -> Table:
    header = ["Setting", "Iter", "n", *VALIDATION_HEADER, "AE2 LC (%)", "AE2 WR (%)"]
    rows = []
    ablations = [g for g in groups if g.method in SEED_ABLATIONS]
    if ablations:
        synpo = [g for g in groups if g.method == "synpo" and g.prompt_source in (None, "generator")]
        for g in ablations + synpo:
            at = g.at(-1)
            t = str(at[0]["iteration"]) if at else ""
            rows.append([g.label, t, str(len(at)), *_validation_cells(at), *_alpaca_cells(at)])
        rows += paper_rows(paper, "table7", [None, None, None, None, "alpaca_lc", "alpaca_wr"])
    return (
        header,
        rows,
        ["Seed ablations (one round) beside SynPO's last iteration; the paper's rows are Llama3-Base."],
    )


def diversity_table(groups: list[Group], paper: dict) -> Table:
    header = ["Run", "Prompts", "n", "Mean cosine ↓", "distinct-1 ↑", "distinct-2 ↑", "Self-BLEU ↓", "prompts"]
    rows = []
    for g in groups:
        for t in g.iterations():
            at = [r for r in g.at(t) if "div_mean_cosine" in r]
            if at:
                which = "seed" if t == 0 else f"iteration {t}"
                keys = ("div_mean_cosine", "div_distinct_1", "div_distinct_2", "div_self_bleu")
                rows.append([g.label, which, str(len(at))] + [cell(at, k, digits=3) for k in keys])
                rows[-1].append(cell(at, "div_n_prompts", digits=0))
    notes = [f"paper (Figure 5): {paper['figure5']}"] if rows and paper.get("figure5") else []
    return header, rows, notes
