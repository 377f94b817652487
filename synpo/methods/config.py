"""The method group's shared schemas. Each method's own schema (``schema`` of its entry in ``synpo.methods.METHODS``)
extends one of these with its fields, beside its code; its YAML under conf/method/ names it first in ``defaults``
(``schema_<name>``), so a key of another method is refused when the config is composed.

- ``MethodConfig``: every method (its name, the iterations).
- ``PairsConfig``: methods that filter preference pairs and train beta candidates, selected on validation.
- ``DrawnPromptsConfig``: those whose prompts come from ``prompt_source`` each iteration (SynPO's generator, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from synpo.schema import spec


@dataclass
class MethodConfig:
    """What every method has."""

    name: str = spec("synpo", "the method (synpo.methods.METHODS)")
    iterations: int = spec(4, "T, the number of iterations", gt=0)


@dataclass
class PairsConfig(MethodConfig):
    """A method that filters preference pairs and selects the best beta candidate on validation."""

    max_repetition: float = spec(0.5, "drop a pair if either response repeats more than this share", gt=0, le=1)
    drop_truncated: bool = spec(True, "drop a pair whose chosen or rejected answer hit max_new_tokens (cut off)")
    keep_previous_if_worse: bool = spec(False, "keep pi_{t-1} if every beta candidate validates worse (paper: off)")


@dataclass
class DrawnPromptsConfig(PairsConfig):
    """A method whose prompts come from ``prompt_source`` each iteration (``synpo.methods.prompt_sources``)."""

    n_prompts: int = spec(600, "prompts drawn per iteration (before parsing and dedupe)", gt=0)
    pairs_per_iteration: int = spec(400, "kept pairs added to D each iteration", gt=0)
    prompt_source: str = spec(
        "generator",
        "where each iteration's prompts come from (the paper's Table 6): SynPO's generator, self_instruct (the "
        "policy, few-shot from seed prompts), seed (the seed prompts) or manual (method.manual_prompts)",
        choices=("generator", "self_instruct", "seed", "manual"),
    )
    manual_prompts: str | None = spec(None, "prompt_source=manual: a JSONL of {'prompt'} rows, or tinyworld")
    self_instruct_examples: int = spec(4, "prompt_source=self_instruct: seed prompts shown per request", gt=0)
    generator_keywords: int = spec(3, "prompt_source=generator: keywords per synthetic prompt request", gt=0)
    generator_template: str | None = spec(
        None,
        "the prompt generator's request with {keywords}; null: ours (the paper's Fig. 3, paraphrased); or file:<path>",
    )
    generator_stop: str | None = spec(
        "</question>",
        "the prompt generator's sampling stops after this string: only the question is used, not the solution it "
        "writes after (ours; null: sample to max_new_tokens, as the paper's code does)",
    )
