"""The method config group's schema: the iteration recipe's knobs (SynPO's and its baselines', then SPIN's). Each method's checks
that relate these fields to the rest of the config are its ``problems`` (``synpo.methods``)."""

from __future__ import annotations

from dataclasses import dataclass

from synpo.schema import spec


@dataclass
class NoiseConfig:
    """SPIN's noise fix: more randomness on the generated side (spin_noised, and spin_adaptive's small margins)."""

    temperature: float | None = spec(None, "sampling temperature of the generated side; null: generator's", ge=0)
    temperature_final: float | None = spec(None, "anneal linearly to this by the last iteration; null: constant", ge=0)
    token_rate: float = spec(0.0, "share of generated-side tokens replaced by random vocabulary tokens", ge=0, lt=1)


@dataclass
class MethodConfig:
    """The iteration recipe: SynPO (the paper's Algorithm 1) or SPIN and its fixes."""

    name: str = spec("synpo", "the method (synpo.methods.METHODS)")
    iterations: int = spec(4, "T, the number of iterations", gt=0)
    # SynPO
    n_prompts: int = spec(600, "synthetic prompts sampled from G per iteration (before parsing and dedupe)", gt=0)
    pairs_per_iteration: int = spec(400, "kept pairs added to D each iteration; D accumulates", gt=0)
    max_repetition: float = spec(0.5, "drop a pair if either response repeats more than this share", gt=0, le=1)
    improver_filter: bool = spec(True, "keep an improver example only if score(y*) - score(draft) > threshold")
    drop_truncated: bool = spec(True, "drop a pair whose chosen or rejected answer hit max_new_tokens (cut off)")
    score_drafts: bool = spec(
        True,
        "synpo: also score pi_{t-1}'s drafts, for scores.jsonl's score_policy (a second scorer pass over every "
        "synthetic prompt; the paper settings turn it off)",
    )
    keep_previous_if_worse: bool = spec(False, "keep pi_{t-1} if every beta candidate validates worse (paper: off)")
    generator_keywords: int = spec(3, "keywords per synthetic prompt request", gt=0)
    generator_template: str | None = spec(
        None,
        "the prompt generator's request with {keywords}; null: ours (the paper's Fig. 3, paraphrased); or file:<path>",
    )
    improver_template: str | None = spec(
        None, "the improver's request with {question} and {draft}; null: ours (Fig. 7, paraphrased); or file:<path>"
    )
    generator_stop: str | None = spec(
        "</question>",
        "the prompt generator's sampling stops after this string: only the question is used, not the solution it "
        "writes after (ours; null: sample to max_new_tokens, as the paper's code does)",
    )
    improver_max_length: int | None = spec(None, "the improver's SFT max length; null: sft_trainer.max_length", gt=0)
    prompt_source: str = spec(
        "generator",
        "where each iteration's prompts come from (the paper's Table 6): SynPO's generator, self_instruct (the "
        "policy, few-shot from seed prompts), seed (the seed prompts) or manual (method.manual_prompts)",
        choices=("generator", "self_instruct", "seed", "manual"),
    )
    manual_prompts: str | None = spec(None, "prompt_source=manual: a JSONL of {'prompt'} rows, or tinyworld")
    self_instruct_examples: int = spec(4, "prompt_source=self_instruct: seed prompts shown per request", gt=0)
    # Sampling-Ranking and Self-Rewarding
    samples_per_prompt: int = spec(5, "answers pi_{t-1} samples per prompt, in one generation call (paper: 5)", ge=2)
    judge_template: str = spec(
        "rubric",
        "self_rewarding: the judge prompt; rubric (Yuan et al.'s additive 5 points) or short (small contexts)",
        choices=("rubric", "short"),
    )
    judge_data: str | None = spec(
        None,
        "self_rewarding: judge-training (EFT) examples, a JSONL of {prompt, response, score 0-5} or tinyworld; "
        "null: the policy judges without them",
    )
    judge_samples: int = spec(1, "self_rewarding: judgements per answer, averaged (1: greedy; more: sampled)", gt=0)
    judge_max_new_tokens: int = spec(128, "self_rewarding: new tokens per judgement", gt=0)
    # offline ("Manual")
    preference_file: str | None = spec(
        None, "offline: a JSONL of {prompt, chosen, rejected} (e.g. UltraFeedback binarized), or tinyworld"
    )
    n_preferences: int = spec(600, "offline with preference_file=tinyworld: the pairs drawn from the world", gt=0)
    # SPIN
    mix_previous: bool = spec(True, "train on this iteration's pairs plus the previous iteration's (SPIN)")
    noise: NoiseConfig = spec(help="SPIN's noise settings", factory=NoiseConfig)
    reverse_threshold: float = spec(0.3, "spin_adaptive: a judge margin above this orders the pair by the judge")
    noise_threshold: float = spec(0.1, "spin_adaptive: a judge margin below this gets noise instead", ge=0)
