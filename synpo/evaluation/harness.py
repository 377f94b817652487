"""Benchmark suites through lm-eval's ``simple_evaluate`` (``eval=openllm``, ``eval=harness6``, ``eval=tinyharness``).

A suite is a list of (task, few-shot count, metric key) in ``eval.lm_eval.suites.<name>.tasks``; lm-eval takes one
few-shot count per call, so tasks are grouped by it. The backend is ``hf`` (transformers, in this process) or
``vllm`` (lm-eval's vLLM model; needs vLLM importable here). Local YAML tasks over local JSONL run offline: the
``tinyworld`` suite writes two such tasks (one multiple choice, one generation) built from the tiny world.
"""

from __future__ import annotations

import glob
import json
import logging
import random
from pathlib import Path

from synpo.artifacts import atomic_write_text, write_jsonl
from synpo.errors import UserError
from synpo.memory import free_accelerator

log = logging.getLogger(__name__)

TINYWORLD_TASKS = ("tinyworld_mc", "tinyworld_gen")

_MC_YAML = """task: tinyworld_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
"""

_GEN_YAML = """task: tinyworld_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 48
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: false  # the uppercase family's content is its case
    ignore_punctuation: true
    regexes_to_ignore:  # the gold sentences' lead phrases: the task checks the content, in either form
      - '^ *The (reversed words|sorted numbers) are: '
      - '^ *The sum of [0-9]+ and [0-9]+ is '
      - '^ *The word in uppercase is '
      - '^ *The largest number is '
      - '^ *The word [a-z]+ has '
      - ' letters'
"""


def write_tinyworld_tasks(out_dir: Path, n: int = 48, seed: int = 1234) -> Path:
    """Two lm-eval tasks over local JSONL, from tiny-world tasks the SFT data never held (a fixed seed):
    ``tinyworld_mc`` (pick the gold answer among 4 of the same family) and ``tinyworld_gen`` (the exact content,
    terse or in the gold sentence: the lead phrases and punctuation are ignored, so that it measures content, not
    form; until 2026-12-01 it matched the terse rendering only and scored a right gold-form answer as wrong)."""
    from synpo.tinyworld.tasks import sample_distinct_tasks

    out_dir = Path(out_dir)
    rng = random.Random(seed)
    tasks = sample_distinct_tasks(rng, n)
    mc, gen = [], []
    for t in tasks:
        others = [o for o in sample_distinct_tasks(rng, 12) if o.family == t.family and o.gold() != t.gold()][:3]
        choices = [t.gold()] + [o.gold() for o in others]
        rng.shuffle(choices)
        mc.append(
            {
                "question": t.prompt + "\nAnswer:",
                "choices": [" " + c for c in choices],
                "label": choices.index(t.gold()),
            }
        )
        gen.append({"prompt": t.prompt, "answer": t.terse()})
    write_jsonl(out_dir / "tinyworld_mc.jsonl", mc)
    write_jsonl(out_dir / "tinyworld_gen.jsonl", gen)
    # datasets reads data_files as glob patterns: a sweep point's directory (eval=[validation,tinyharness],seed=0)
    # would match nothing unless its [ ] * ? are escaped.
    for name, template in (("tinyworld_mc", _MC_YAML), ("tinyworld_gen", _GEN_YAML)):
        data = json.dumps(glob.escape(str(out_dir / f"{name}.jsonl")))
        atomic_write_text(out_dir / f"{name}.yaml", template.format(data=data))
    return out_dir


def _model(backend: str, model_path: str, dtype: str, trust_remote_code: bool, batch_size: int, vllm: dict):
    if backend == "hf":
        import torch
        from lm_eval.models.huggingface import HFLM

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return HFLM(
            pretrained=model_path,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            batch_size=batch_size,
            device=device,
        )
    if backend == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise UserError(
                "eval.lm_eval.backend=vllm needs vLLM importable in this environment (lm-eval runs it in-process): "
                "`pip install vllm`, or use eval.lm_eval.backend=hf."
            ) from None
        from lm_eval.models.vllm_causallms import VLLM

        return VLLM(pretrained=model_path, dtype=dtype, trust_remote_code=trust_remote_code, batch_size="auto", **vllm)
    raise UserError(f"eval.lm_eval.backend={backend!r}: choose hf or vllm")


def _task_manager(tasks: list[dict], work_dir: Path, include_path: str | None):
    """lm-eval's task manager with our include paths (the tiny world's tasks written when a suite names them)."""
    from lm_eval.tasks import TaskManager

    includes = [str(p) for p in (include_path,) if p]
    if any(t["task"] in TINYWORLD_TASKS for t in tasks):
        includes.append(str(write_tinyworld_tasks(Path(work_dir) / "tinyworld_tasks")))
    manager = TaskManager(include_path=includes or None)
    unknown = [t["task"] for t in tasks if t["task"] not in manager.all_tasks]
    if unknown:
        raise UserError(
            f"lm-eval knows no task {unknown} (eval.lm_eval.suites). Check the names against `lm-eval ls tasks`, or "
            "give a directory of task YAMLs in eval.lm_eval.include_path."
        )
    return manager


def _leaves(task: str, group_subtasks: dict) -> list[str]:
    """The tasks under ``task`` that are not groups themselves (MMLU: its 57 subjects), depth first."""
    if task not in group_subtasks:
        return [task]
    return [leaf for sub in group_subtasks[task] for leaf in _leaves(sub, group_subtasks)]


def _metric_values(res: dict, group: list[dict]) -> dict:
    """Each task's metric from ``res`` (simple_evaluate's output). ``average: subtasks`` takes a group task's value
    as the unweighted mean of its leaf subtasks, as the Open LLM leaderboard v1 averaged MMLU's 57 subjects
    (lm-eval's own group value weights each subject by its size)."""
    results, out = res["results"], {}
    for t in group:
        names = _leaves(t["task"], res.get("group_subtasks") or {}) if t.get("average") == "subtasks" else [t["task"]]
        values = []
        for name in names:
            row = results.get(name, {})
            if t["metric"] not in row:
                raise UserError(
                    f"lm-eval's result for {name!r} has no metric {t['metric']!r} (it has "
                    f"{sorted(k for k in row if ',' in k)}); fix eval.lm_eval.suites"
                )
            values.append(float(row[t["metric"]]))
        out[t["task"]] = sum(values) / len(values)
    return out


def run_suite(
    model_path: str,
    tasks: list[dict],
    work_dir: Path,
    backend: str = "hf",
    batch_size: int = 8,
    limit: int | None = None,
    apply_chat_template: bool = False,
    include_path: str | None = None,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    vllm: dict | None = None,
    seed: int = 0,
) -> dict:
    """``{task: value of its metric}`` for ``tasks`` = [{task, num_fewshot, metric}], plus ``average``."""
    try:
        import lm_eval  # noqa: F401  (imported here for the clear error; _evaluate uses it)
    except ImportError:
        raise UserError(
            "The lm-eval suites need lm-eval 0.4.13: `pip install -e '.[eval]'` (or pip install lm-eval==0.4.13)."
        ) from None
    from synpo.modeling import resolve_model_path

    manager = _task_manager(tasks, work_dir, include_path)
    model = _model(backend, resolve_model_path(model_path), dtype, trust_remote_code, batch_size, vllm or {})
    try:
        return _evaluate(model, tasks, manager, limit, apply_chat_template, seed)
    finally:
        del model  # the policy leaves the accelerator with the stage
        free_accelerator()


def _evaluate(model, tasks: list[dict], manager, limit, apply_chat_template: bool, seed: int) -> dict:
    import lm_eval

    by_shots: dict[int, list[dict]] = {}
    for t in tasks:
        by_shots.setdefault(int(t["num_fewshot"]), []).append(t)
    seeds = dict(random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)
    out: dict = {}
    for shots, group in sorted(by_shots.items()):
        res = lm_eval.simple_evaluate(
            model=model,
            tasks=[t["task"] for t in group],
            num_fewshot=shots,
            limit=limit,
            task_manager=manager,
            apply_chat_template=apply_chat_template,
            log_samples=False,
            bootstrap_iters=0,
            **seeds,
        )
        out.update(_metric_values(res if isinstance(res, dict) else vars(res), group))
        log.info("lm-eval %d-shot: %s", shots, {t["task"]: out[t["task"]] for t in group})
    out["average"] = sum(out[t["task"]] for t in tasks) / len(tasks)
    return out
