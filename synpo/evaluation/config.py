"""The eval config group: validation (always; it selects beta) and the groups that eval options enable."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from synpo.schema import spec

EXPORT_FORMATS = ("alpaca_eval", "arena_hard", "mt_bench")


@dataclass
class WinRateConfig:
    """Pairwise win rate of the policy's answers against reference answers, raw and length-controlled."""

    enabled: bool = spec(False, "run this group")
    reference: str = spec(
        "gold", "gold: the data's reference answers; pi0: the initial policy's", choices=("gold", "pi0")
    )
    n_boot: int = spec(1000, "bootstrap resamples for the 95% intervals", gt=0)
    tie: float = spec(0.0, "|gap| <= tie counts as a tie (a judge's verdicts keep their half points)", ge=0)
    temperature: float = spec(0.7, "the paper's AlpacaEval decoding (a fixed seed per stage); 0: greedy", ge=0)


@dataclass
class LmEvalTask:
    task: str = spec(MISSING, "an lm-eval task name")
    num_fewshot: int = spec(0, "few-shot examples", ge=0)
    metric: str = spec("acc,none", "the key of lm-eval's result row")
    average: str = spec(
        "group",
        "a group task's value: lm-eval's own (group: subtasks weighted by size), or the unweighted mean of its leaf "
        "subtasks (subtasks: how the Open LLM leaderboard v1 averaged MMLU's 57 subjects)",
        choices=("group", "subtasks"),
    )


@dataclass
class LmEvalSuite:
    tasks: list[LmEvalTask] = spec(help="the suite's tasks", factory=list)
    apply_chat_template: bool = spec(False, "render few-shot prompts with the model's chat template")


@dataclass
class LmEvalConfig:
    """Benchmark suites through lm-eval's simple_evaluate; options add suites (eval=[openllm,harness6])."""

    suites: dict[str, LmEvalSuite] = spec(help="suite name -> tasks", factory=dict)
    backend: str = spec("hf", "hf, or vllm (lm-eval's in-process vLLM model)", choices=("hf", "vllm"))
    batch_size: int = spec(8, "lm-eval batch size", gt=0, speed=True)
    limit: int | None = spec(None, "examples per task; null: all (a quick look: 100)", gt=0)
    include_path: str | None = spec(None, "a directory of extra task YAMLs")
    tensor_parallel_size: int = spec(1, "vllm backend: GPUs", gt=0, speed=True)
    gpu_memory_utilization: float = spec(0.8, "vllm backend: share of GPU memory", gt=0, le=1, speed=True)


@dataclass
class DiversityConfig:
    """Diversity of the synthetic prompts of each iteration, and of the seed prompts once."""

    enabled: bool = spec(False, "run this group")
    embedder: str | None = spec(None, "a sentence-transformers directory; null: the packaged all-MiniLM-L6-v2")
    max_prompts: int = spec(1000, "prompts embedded per set, all pairs compared (the paper's Figure 5: 1000)", gt=0)
    self_bleu_max: int = spec(200, "prompts per Self-BLEU estimate (quadratic)", gt=0)


@dataclass
class ExportConfig:
    """Answers in the official tools' formats (AlpacaEval, Arena-Hard, MT-Bench), for their judges."""

    enabled: bool = spec(False, "run this group")
    formats: list[str] = spec(help="which tools' formats", factory=lambda: list(EXPORT_FORMATS))
    alpaca_eval_questions: str | None = spec(None, "AlpacaEval's JSON list of {instruction, dataset}; null: val")
    arena_hard_questions: str | None = spec(None, "Arena-Hard's question.jsonl; null: the validation prompts")
    mt_bench_questions: str | None = spec(None, "MT-Bench's question.jsonl (two turns); null: the validation prompts")
    temperature: float = spec(0.7, "the paper's AlpacaEval decoding (T 0.7)", ge=0)
    max_new_tokens: int = spec(2048, "new tokens per exported answer", gt=0)


@dataclass
class EvalConfig:
    """What is measured after each iteration: the validation split always (it selects beta), and the groups that
    the eval options enable (eval=[validation,winrate,diversity,openllm]), every iteration or only the last."""

    name: str = spec("validation", "label of the composed eval options", choices=("validation", "none"))
    sampled: bool = spec(True, "also evaluate sampled answers (temperature below, fixed seed)")
    temperature: float = spec(0.7, "sampling temperature of the sampled validation answers", ge=0)
    max_new_tokens: int = spec(48, "new tokens per validation answer", gt=0)
    every: str = spec(
        "iteration",
        "iteration: after pi_0 and every iteration; final: pi_0 and the last",
        choices=("iteration", "final"),
    )
    winrate: WinRateConfig = spec(help="the win-rate group", factory=WinRateConfig)
    lm_eval: LmEvalConfig = spec(help="the lm-eval suites", factory=LmEvalConfig)
    diversity: DiversityConfig = spec(help="the prompt-diversity group", factory=DiversityConfig)
    export: ExportConfig = spec(help="the export group", factory=ExportConfig)


# The fields of EvalConfig that validation's answers and metrics depend on (its stage identity): not the groups'
# blocks, nor when the groups run.
VALIDATION_FIELDS = ("sampled", "temperature", "max_new_tokens")
