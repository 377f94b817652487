"""Iterative DPO with a reward model: the loop of RLHFlow's iterative DPO (Dong et al., 2024, "RLHF Workflow") and of
OpenRLHF's former iterative mode, on the shared pipeline.

Per iteration t:

1. the iteration's prompts come from ``method.prompt_source`` (the seed prompts by default: a fresh sample each
   iteration);
2. pi_{t-1} samples ``samples_per_prompt`` answers per prompt in one generation call;
3. the scorer ranks them; the best over the worst is a pair when the scorer's gap is over ``scorer.threshold``
   (Sampling-Ranking's pairs, ``synpo.methods.baselines.best_over_worst_pairs``);
4. pi_{t-1} is trained with the DPO loss on this iteration's pairs only, against itself frozen as the reference, once
   per beta (``trainer.beta``, or each of ``trainer.beta_grid``); the best on validation is pi_t
   (``synpo.methods.selection``, the path SynPO's SimPO candidates take).

Where it departs from those recipes: they train one beta per iteration; a beta grid with selection on validation is
this project's shared path, and ``trainer.beta=<b>`` gives their single-beta loop. Their prompt sets and sample counts
are not the tiny world's; the values in conf/method/iterative_dpo.yaml are ours.
"""

from __future__ import annotations

from dataclasses import replace

from omegaconf import DictConfig

from synpo.artifacts import PROMPTS
from synpo.methods.base import Iteration
from synpo.methods.baselines import BestOfKConfig, best_over_worst_pairs, sample_answers
from synpo.methods.preference import State, select_on_d
from synpo.methods.prompt_sources import iteration_prompts, prepare_source, source_problems
from synpo.stages import Context


class IterativeDPO:
    """On-policy best-over-worst pairs of pi_{t-1}, DPO from pi_{t-1} against pi_{t-1}."""

    schema = BestOfKConfig
    columns = ("n_prompts", "n_pairs_kept", "n_tied", "score_best", "score_worst", "d_size", "beta")
    trainer = "dpo"
    trains_sft = False  # with the default prompt_source=seed; prompt_source=generator trains SynPO's generator
    draws_prompts = True

    def problems(self, cfg: DictConfig) -> list[str]:
        return source_problems(cfg)

    def prepare(self, ctx: Context, pi0_val: dict) -> State:
        return State(prepare_source(ctx), ctx.pi0, "pi_0", dict(pi0_val))

    def iteration(self, ctx: Context, t: int, state: State) -> Iteration:
        prompts, r_prompts = iteration_prompts(ctx, t, state.source, state.policy, state.policy_record)
        groups, r_samples = sample_answers(ctx, t, state, prompts, r_prompts)
        r_pairs = best_over_worst_pairs(ctx, t, prompts, groups, r_samples, "iterative_dpo")
        from_policy = replace(state, base=(state.policy, state.policy_record))  # DPO from pi_{t-1}, its reference
        prompts_file = ctx.rundir.iter_file(t, PROMPTS)
        return select_on_d(ctx, t, from_policy, r_pairs, dict(r_prompts.info), prompts_file, accumulate=False)


METHODS = {"iterative_dpo": IterativeDPO()}
