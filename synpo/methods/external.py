"""``external``: a policy trained elsewhere, evaluated as pi_1 in this run's setting without training it: the
paper's "Manual" row read from SimPO's released checkpoints (princeton-nlp's Mistral-7B-Base-SFT-SimPO,
Llama-3-Base-8B-SFT-SimPO, trained on UltraFeedback with their own beta and gamma) instead of retrained with SynPO's
beta grid. pi_0 is validated as in every run, so the row shows the released model against this run's pi_0 on the
same validation split and, with the eval groups on, the same benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from synpo.artifacts import POLICY_LINK, fingerprint, point_link
from synpo.evaluation.validation import validation_stage
from synpo.methods.base import Iteration
from synpo.methods.config import MethodConfig
from synpo.modeling import model_path_problem, resolve_model_path
from synpo.schema import spec
from synpo.stages import Context


@dataclass
class ExternalConfig(MethodConfig):
    """The model to evaluate as pi_1."""

    policy_path: str | None = spec(
        None, "a model directory (or hub id in the cache) trained elsewhere, e.g. SimPO's released checkpoint"
    )


class External:
    """pi_1 = ``method.policy_path``, one round, nothing trained."""

    schema = ExternalConfig
    columns = ()
    trainer = None
    trains_sft = False
    draws_prompts = False

    def problems(self, cfg: DictConfig) -> list[str]:
        m = cfg.method
        p = [] if m.iterations == 1 else [f"method.iterations={m.iterations}: external is one round; set it to 1"]
        if not m.policy_path:
            return [*p, "method.policy_path is null: give the model directory to evaluate"]
        problem = model_path_problem(m.policy_path)
        return p + ([f"method.policy_path: {problem}"] if problem else [])

    def prepare(self, ctx: Context, pi0_val: dict) -> dict:
        return dict(pi0_val)

    def iteration(self, ctx: Context, t: int, state: dict) -> Iteration:
        rundir, model = ctx.rundir, resolve_model_path(ctx.run.method.policy_path)
        local = Path(model).expanduser().resolve()
        # What pi_1 is, for the stages that evaluate it: the directory's files (names, sizes, times), or a hub id
        made = f"external:{model}:{directory_digest(local) if local.is_dir() else 'hub'}"
        r_eval = validation_stage(
            ctx, rundir.iter_stage(t, "eval"), model, rundir.iter_dir(t), [made], rundir.reference_answers
        )
        if local.is_dir():
            point_link(rundir.iter_file(t, POLICY_LINK), local)
        return Iteration({"iteration": t, **r_eval.info}, dict(r_eval.info), model, made)


def directory_digest(d: Path) -> str:
    """A digest of a model directory's files by name, size and modification time (a retrained or replaced
    checkpoint gets another), without reading its gigabytes."""
    files = sorted(f for f in d.rglob("*") if f.is_file())
    return fingerprint([(str(f.relative_to(d)), f.stat().st_size, f.stat().st_mtime_ns) for f in files])


METHODS = {"external": External()}
