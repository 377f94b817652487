"""The evaluation groups' registry: one entry per group that the eval options enable (``eval=[winrate,diversity,
openllm]``), each with its block under ``cfg.eval``, its schema, when it is on, what it checks and needs, the prefix
of the metrics it reports, and the stage function that runs it (``synpo.evaluation.suite``). ``evaluate_groups``
runs the enabled ones after pi_0 and after each iteration (or only the last); a new group is one function in suite.py
and one entry here, with its schema in config.py and its option YAML under conf/eval/."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from synpo.evaluation import suite
from synpo.evaluation.config import EXPORT_FORMATS, DiversityConfig, ExportConfig, LmEvalConfig, WinRateConfig


@dataclass(frozen=True)
class EvalGroup:
    key: str  # its block: cfg.eval.<key>
    schema: type
    prefix: str  # of the metrics it adds to results.json and W&B ("" for none: it writes files only)
    enabled: Callable[[DictConfig], bool]  # of its block
    run: Callable[..., dict]  # (ctx, its block, t, policy, policy_record, prompts_file) -> metrics
    packages: tuple[str, ...] = ()  # imported when it runs, beyond the core install (`pip install -e '.[eval]'`)
    check: Callable[[DictConfig], list[str]] = lambda block: []  # its block's own disagreements, when enabled

    def problems(self, cfg: DictConfig) -> list[str]:
        block = cfg.eval[self.key]
        if not self.enabled(block):
            return []
        p = [f"eval.{self.key}: {q}" for q in self.check(block)]
        for package in self.packages:
            if importlib.util.find_spec(package) is None:
                p.append(
                    f"eval.{self.key} needs the {package} package, which is not installed: `pip install -e '.[eval]'`"
                )
        return p


def _export_problems(x: DictConfig) -> list[str]:
    p = []
    bad = [f for f in x.formats if f not in EXPORT_FORMATS]
    if bad:
        p.append(f"formats={list(x.formats)}: unknown {bad}; choose from {list(EXPORT_FORMATS)}")
    for key in ("alpaca_eval_questions", "arena_hard_questions", "mt_bench_questions"):
        if x[key] and not Path(x[key]).is_file():
            p.append(f"{key}={x[key]!r}: no such file; give the tool's question file or null")
    return p


def _lm_eval_problems(h: DictConfig) -> list[str]:
    p = [f"suites.{name} lists no tasks" for name, s in h.suites.items() if not s.tasks]
    if h.include_path and not Path(h.include_path).is_dir():
        p.append(f"include_path={h.include_path!r} is not a directory of task YAMLs")
    return p


GROUPS: dict[str, EvalGroup] = {
    g.key: g
    for g in (
        EvalGroup("winrate", WinRateConfig, "wr_", lambda b: b.enabled, suite.winrate),
        EvalGroup(
            "diversity", DiversityConfig, "div_", lambda b: b.enabled, suite.diversity, ("sentence_transformers",)
        ),
        EvalGroup(
            "lm_eval", LmEvalConfig, "lm_", lambda b: bool(b.suites), suite.lm_eval, ("lm_eval",), _lm_eval_problems
        ),
        EvalGroup("export", ExportConfig, "", lambda b: b.enabled, suite.export, check=_export_problems),
    )
}


def eval_problems(cfg: DictConfig) -> list[str]:
    """What is wrong with the enabled groups' blocks beyond their field constraints, including packages they need."""
    return [p for g in GROUPS.values() for p in g.problems(cfg)]


def evaluate_groups(ctx, t: int, policy: str, policy_record, prompts_file: Path | None) -> dict:
    """Run the enabled groups for pi_t (``prompts_file``: the iteration's synthetic prompts, if the method makes
    them; at t = 0 the seed prompts are measured instead); the metrics merged into the iteration's row."""
    e = ctx.run.eval
    if e.every == "final" and t not in (0, ctx.run.method.iterations):
        return {}
    metrics: dict = {}
    for g in GROUPS.values():
        if g.enabled(e[g.key]):
            metrics.update(g.run(ctx, e[g.key], t, policy, policy_record, prompts_file))
    return metrics
