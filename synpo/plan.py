"""``python run.py <overrides> --plan`` (or ``python -m synpo.plan <overrides>``): what the composed run will cost,
before any work, on a machine without a GPU too. ``assume.<field>=<value>`` changes an assumption of
``synpo.cost.Assumptions`` (e.g. ``assume.answer_fill=0.3 assume.gpus=16``).

Per iteration and stage: sequences, tokens, model arithmetic (PFLOP), GPU-hours at the stated efficiencies, and the
wall hours on the node as the code places each stage (generation and training on every GPU, scoring on
``scorer.replicas`` of them); peak training memory per GPU; disk written; totals; and every assumption
(``synpo.cost``). The method says what an iteration runs (its ``workload``); a method without one is not modelled.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from synpo.cost import H100_BF16_PEAK, H100_MEMORY, Assumptions, Work, shape, training_memory_gib
from synpo.errors import UserError

CONF = Path(__file__).resolve().parents[1] / "conf"
NO_MODEL = {"matmul": 0, "total": 0, "layers": 0, "width": 0, "vocab": 0}  # the verifier, or a judge behind an API


def compose(overrides: list[str]) -> DictConfig:
    """The config ``python run.py <overrides>`` would run (Hydra's runtime-only keys aside)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    import synpo.config  # noqa: F401  (registers the schemas)

    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=[*overrides, "run_dir=plan-only"])
    except (HydraException, OmegaConfBaseException) as e:
        why = f"{e}" + (f" ({e.__cause__})" if e.__cause__ and str(e.__cause__) not in str(e) else "")
        raise UserError(
            f"The overrides {' '.join(overrides) or '(none)'} do not compose into a config: {why.strip()}. Fix or "
            "remove the override it names (`python run.py --help` lists the groups and their options)."
        ) from None


def workloads(cfg: DictConfig, a: Assumptions) -> list[list[Work]]:
    """Each iteration's stages, as the run's method declares them."""
    from synpo.methods import get_method
    from synpo.scoring.config import SCORERS

    method = get_method(cfg.method.name)
    if not hasattr(method, "workload"):
        raise UserError(
            f"method.name={cfg.method.name!r} has no workload model yet, so its run cannot be planned; methods that "
            "have one: synpo, spin and its fixes."
        )
    policy = shape(cfg.model.name_or_path)
    entry = SCORERS[cfg.scorer.name]
    scorer = shape(cfg.scorer.name_or_path) if entry.loads_model else NO_MODEL
    return [method.workload(cfg, t, a, policy, scorer, entry.pairwise) for t in range(1, cfg.method.iterations + 1)]


def _wall_hours(w: Work, a: Assumptions, machines: int = 1, replicas: int = 1) -> float:
    """Hours on the allocation as the code places the stage: scoring on ``scorer.replicas`` GPUs of the first node,
    generation on the first node's ``a.gpus``, training across every node's."""
    gpus = {"score": min(replicas, a.gpus), "generate": a.gpus}.get(w.kind, a.gpus * machines)
    return w.gpu_hours() / gpus


def _memory(cfg: DictConfig, policy: dict, flat: list[Work], world: int) -> list[str]:
    """Each training job's memory per GPU at its longest sequences, a job over an 80 GB GPU marked with what to set."""
    from synpo.training.launch import JOBS

    jobs = [("the preference trainer", cfg.trainer, True)]
    if any(w.kind == "train" and w.stage.endswith("SFT") for w in flat):
        jobs.append(("the SFT jobs", cfg.sft_trainer, False))
    memory = []
    for name, t, pairs in jobs:
        reference = pairs and JOBS[cfg.trainer.loss].reference
        gib = training_memory_gib(policy, t, world, policy.get("vocab"), pairs, reference)
        per = f"{t.batch_size} pair(s), {2 * t.batch_size} sequences" if pairs else f"{t.batch_size} sequences"
        ckpt = "gradient checkpointing " + ("on" if t.gradient_checkpointing else "off")
        line = f"{name} about {gib:,.1f} GiB (micro batch {per} of up to {t.max_length} tokens, {ckpt})"
        if gib > H100_MEMORY / 2**30:
            line += (
                f": **over an {H100_MEMORY / 1e9:.0f} GB GPU**; turn gradient checkpointing on or lower the batch_size "
                "(speed settings: finished stages are kept)"
            )
        memory.append(line)
    return memory


def render(cfg: DictConfig, its: list[list[Work]], a: Assumptions) -> str:
    """The plan as Markdown."""
    from synpo.training.config import world_size

    policy = shape(cfg.model.name_or_path)
    lines = [
        f"# Plan: {cfg.name} ({cfg.model.name_or_path}, {cfg.method.name}, {cfg.method.iterations} iterations)",
        "",
    ]
    machines, replicas = cfg.launch.num_machines, cfg.scorer.replicas
    where = "the node" if machines == 1 else f"the {machines} nodes"
    lines += [f"| iteration | stage | sequences | tokens (M) | passes | PFLOP | GPU-h | wall h on {where} |"]
    lines += ["|---|---|---|---|---|---|---|---|"]
    for t, works in enumerate(its, 1):
        for w in works:
            cells = [t, w.stage, f"{w.sequences:,.0f}", f"{w.tokens / 1e6:,.1f}", f"{w.passes:g}"]
            cells += [
                f"{w.flops / 1e15:,.1f}",
                f"{w.gpu_hours():,.2f}",
                f"{_wall_hours(w, a, machines, replicas):,.2f}",
            ]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    flat = [w for works in its for w in works]
    floor = sum(w.flops for w in flat) / H100_BF16_PEAK / 3600
    roofline = sum(w.bound_hours() for w in flat)
    gpu_h, wall = sum(w.gpu_hours() for w in flat), sum(_wall_hours(w, a, machines, replicas) for w in flat)
    size = 2 * policy["total"] / 1e9  # GB of one bf16 model
    written = sum(w.models for w in flat) * size
    # the candidates that were not selected are deleted after each selection unless launch.keep_candidates
    kept = written if cfg.launch.keep_candidates else written - sum(w.models - 1 for w in flat if w.models > 1) * size
    world = world_size(cfg.launch)
    memory = _memory(cfg, policy, flat, world)
    lines += [
        "",
        f"- **Total: {gpu_h:,.1f} GPU-hours** ({gpu_h / len(its):,.1f} per iteration), about {wall:,.1f} hours on "
        f"{a.gpus * machines} GPUs; the FLOP floor at the H100's bf16 peak is {floor:,.1f} GPU-hours "
        f"({gpu_h / max(floor, 1e-9):.1f}x), and the roofline floor, where decoding waits on the HBM's bandwidth "
        f"instead, {roofline:,.1f} ({gpu_h / max(roofline, 1e-9):.1f}x).",
        f"- **Training memory per GPU** (ZeRO-3 over {world} process(es), at the longest sequences): "
        + "; ".join(memory)
        + ".",
        f"- **Disk**: {written:,.0f} GB of final models written over the run (bf16, {size:,.1f} GB each), {kept:,.0f} "
        "GB of them kept (launch.keep_candidates decides), plus each job's step checkpoints while it runs.",
        f"- Policy: {policy['matmul'] / 1e9:,.2f}B matmul parameters, {policy['layers']} layers, width {policy['width']}.",
        "- Assumptions: " + ", ".join(f"{k}={v}" for k, v in vars(a).items()) + " (synpo/cost.py says where each "
        "comes from); attention's own arithmetic, padding and recomputed activations are not counted.",
    ]
    if machines > 1:  # training spans the nodes; generation and scoring stay on the first
        idle = sum(_wall_hours(w, a, machines, replicas) for w in flat if w.kind != "train")
        lines.append(
            f"- **Idle nodes**: generation and scoring run on the first of {machines} nodes, so the "
            f"other {machines - 1} wait about {idle:,.1f} hours each "
            f"({idle * (machines - 1) * a.gpus:,.0f} GPU-hours held, not counted above)."
        )
    return "\n".join(lines) + "\n"


def assumptions(settings: list[str]) -> Assumptions:
    """``Assumptions`` with ``assume.<field>=<value>`` settings applied (e.g. ``assume.answer_fill=0.3``)."""
    a, known = Assumptions(), set(vars(Assumptions()))
    for item in settings:
        key, _, value = item.removeprefix("assume.").partition("=")
        if key not in known:
            raise UserError(f"{item}: the plan has no assumption {key!r}; it has {sorted(known)}")
        try:
            setattr(a, key, type(getattr(a, key))(value))
        except ValueError:
            raise UserError(f"{item}: {value!r} is not a number") from None
    return a


def main(argv: list[str] | None = None) -> int:
    from synpo.config import collect_problems

    args = list(sys.argv[1:] if argv is None else argv)
    overrides = [x for x in args if not x.startswith("assume.")]
    try:
        a = assumptions([x for x in args if x.startswith("assume.")])
        cfg = compose(overrides)
        # The plan runs nothing, so it checks the config but not this machine's vLLM interpreter (it prices a GPU
        # run from a laptop); data files are not read either.
        problems = [p for p in collect_problems(cfg, read_files=False) if not p.startswith("generator.python=")]
        if problems:
            raise UserError("The config has problem(s):\n  - " + "\n  - ".join(problems))
        sys.stdout.write(render(cfg, workloads(cfg, a), a))
    except UserError as e:
        sys.stderr.write(f"{e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
