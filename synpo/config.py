"""Config schemas (one dataclass per Hydra group, registered in ConfigStore) and ``validate``.

Hydra checks types and unknown keys against these schemas when it composes. ``validate`` then checks values and
how fields agree with each other, and raises one ``UserError`` that lists every problem with its key, the bad value
and what is allowed. It never uses ``assert`` (``python -O`` strips them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from synpo.errors import UserError

METHODS = ("synpo", "spin", "spin_judged", "spin_noised", "spin_adaptive")
SPIN_METHODS = METHODS[1:]
SCORERS = ("verifier", "reward_model", "armorm", "pairrm", "judge")
GENERATOR_BACKENDS = ("hf", "vllm")
LOSSES = ("simpo", "dpo", "sft")
LAUNCHERS = ("inprocess", "accelerate")
EVALS = ("validation", "none")
EVAL_EVERY = ("iteration", "final")
EXPORT_FORMATS = ("alpaca_eval", "arena_hard", "mt_bench")
WINRATE_REFERENCES = ("gold", "pi0")
LOGGERS = ("wandb", "none")
LOGGER_MODES = ("auto", "offline", "online", "disabled")
DTYPES = ("float32", "bfloat16", "float16")
DATA_SOURCES = ("tinyworld", "jsonl", "hf")
ANSWER_STYLES = ("gold", "sft")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
SELECT_ON = ("val_score", "val_win_rate", "val_score_sampled")


@dataclass
class ModelConfig:
    """The policy pi_0 (and the starting point of the generator and improver)."""

    name: str = MISSING  # short label used in run names
    name_or_path: str = MISSING  # local directory, hub id, or builtin:tiny-sft
    dtype: str = "float32"  # weights' dtype for training and HF generation
    trust_remote_code: bool = False  # only ever true for a named model whose code you have read


@dataclass
class DataConfig:
    """The seed set {(x*, y*)}, its train/validation split and the keyword pool."""

    name: str = MISSING
    source: str = "tinyworld"  # tinyworld: generated from the world; jsonl: rows {"prompt", "answer"} from `path`
    path: str | None = None  # the seed JSONL when source=jsonl
    hf_name: str | None = None  # source=hf: a datasets name (or a builder such as "json" with hf_data_files)
    hf_split: str = "train"
    hf_data_files: str | None = None
    prompt_field: str = "prompt"  # source=hf: the prompt column, or a chat column (list of {role, content})
    answer_field: str | None = "answer"  # null: the answer is the first assistant turn of prompt_field's chat
    n_train: int = 1200  # seed prompts for training (tinyworld: drawn; jsonl: at most this many are used)
    n_val: int = 96  # held out for validation (beta selection and the results table)
    keywords: str = "tinyworld"  # tinyworld: the world's vocabulary; corpus: 3 words per paragraph of keyword_corpus
    keyword_corpus: str | None = None  # keywords=corpus: a local text file, paragraphs separated by blank lines
    answers: str = "gold"  # tinyworld only: gold full sentences, or sft-quality ones (terse, some wrong) for SPIN
    sft_noise: float = 0.1  # with answers=sft: share of answers with wrong content, like noisy SFT data


@dataclass
class NoiseConfig:
    """SPIN's noise fix: more randomness on the generated side (spin_noised, and spin_adaptive's small margins)."""

    temperature: float | None = None  # sampling temperature of the generated side; null: generator.temperature
    temperature_final: float | None = None  # anneal linearly to this by the last iteration; null: constant
    token_rate: float = 0.0  # share of generated-side tokens replaced by random vocabulary tokens


@dataclass
class MethodConfig:
    """The iteration recipe: SynPO (DESIGN section 6) or SPIN and its fixes (section 7)."""

    name: str = "synpo"
    iterations: int = 4  # T
    n_prompts: int = 600  # synthetic prompts sampled from G per iteration (before parsing and dedupe)
    pairs_per_iteration: int = 400  # kept pairs added to D each iteration; D accumulates
    max_repetition: float = 0.5  # drop a pair if either response repeats more than this share of its n-grams
    improver_filter: bool = True  # keep an improver example only if score(y*) - score(draft) > scorer.threshold
    keep_previous_if_worse: bool = False  # keep pi_{t-1} if every beta candidate validates worse (off in the paper)
    generator_keywords: int = 3  # keywords per synthetic prompt request
    improver_max_length: int | None = None  # the improver's SFT max length; null: sft_trainer.max_length
    # SPIN
    mix_previous: bool = True  # train on this iteration's pairs plus the previous iteration's (SPIN)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    reverse_threshold: float = 0.3  # spin_adaptive: a judge margin above this orders the pair by the judge
    noise_threshold: float = 0.1  # spin_adaptive: a judge margin below this gets noise instead


@dataclass
class ScorerConfig:
    """Scores a response to a prompt; the threshold applies to score(chosen) - score(rejected)."""

    name: str = "verifier"
    threshold: float = 0.1
    batch_size: int = 64
    name_or_path: str | None = None  # reward_model / armorm: the reward model
    trust_remote_code: bool = False  # armorm only: its model class is custom code shipped with the checkpoint
    max_length: int = 4096  # tokens of the rendered conversation the reward model sees
    dtype: str = "float32"
    shard_size: int = 1024  # pairs per scores shard; a crash while scoring loses at most one shard
    # judge only: an OpenAI-compatible chat endpoint; name_or_path is the model name the server knows
    endpoint: str | None = None  # e.g. http://127.0.0.1:8000/v1
    api_key_env: str | None = None  # the environment variable holding the API key (never the key itself)
    timeout_s: float = 60.0
    max_retries: int = 4
    concurrency: int = 8  # requests in flight


@dataclass
class GeneratorConfig:
    """The generation backend and its sampling settings."""

    backend: str = "hf"
    temperature: float = 0.7  # the paper's sampling temperature
    top_p: float = 1.0
    max_new_tokens: int = 48
    batch_size: int = 64  # hf: prompts per model.generate call
    shard_size: int = 256  # prompts per shard file; a crash loses at most one shard
    n: int = 1  # samples per prompt (the SynPO and SPIN methods use 1)
    # vllm only -------------------------------------------------------------------------------------------------
    python: str | None = None  # interpreter of the environment that has vLLM; null: this one
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None  # null: the model's own
    enforce_eager: bool = False  # skip CUDA graph capture (faster start, slower decoding)
    devices: list[int] | None = None  # GPU ids for the worker (CUDA_VISIBLE_DEVICES); null: all visible


@dataclass
class TrainerConfig:
    """One training job's loss and optimisation settings (launch topology lives elsewhere)."""

    loss: str = "simpo"
    learning_rate: float = 1e-5
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    optimizer: str = "adamw_torch"
    weight_decay: float = 0.0
    max_length: int = 512
    max_prompt_length: int = 256
    beta: float | None = None  # a fixed beta (no search); null: search beta_grid
    beta_grid: list[float] = field(default_factory=lambda: [2.0, 4.0, 6.0, 8.0, 10.0, 12.0])
    gamma: float | None = None  # SimPO's absolute target margin (paper: 1.6); give this or gamma_beta_ratio
    gamma_beta_ratio: float | None = None  # gamma = ratio * beta
    select_on: str = "val_score"  # validation metric that picks the beta
    beta_schedule: list[float] | None = None  # SPIN: beta per iteration (index t-1); null: `beta`
    lr_schedule: list[float] | None = None  # SPIN: learning rate per iteration (index t-1); null: learning_rate
    launcher: str = "inprocess"  # inprocess, or accelerate: `accelerate launch` of a job file (DeepSpeed, multi-GPU)
    accelerate_config: str = "zero2"  # conf/accelerate/<name>.yaml: ddp, zero2 or zero3 (topology only)
    num_processes: int = 1  # processes (GPUs) per training job under accelerate
    devices: list[int] | None = None  # GPU ids for the job (CUDA_VISIBLE_DEVICES); null: all visible
    # Train an iteration's beta candidates at once, each on its own num_processes GPUs out of `devices`
    # (accelerate launcher only; e.g. devices [0..5], num_processes 1: six candidates in parallel)
    concurrent_candidates: bool = False
    save_steps: int = 0  # 0: no mid-run checkpoints


@dataclass
class WinRateConfig:
    """Pairwise win rate of the policy's answers against reference answers, raw and length-controlled."""

    enabled: bool = False
    reference: str = "gold"  # gold: the data's reference answers; pi0: the initial policy's answers
    n_boot: int = 1000  # bootstrap resamples for the 95% intervals
    tie: float = 0.0  # |gap| <= tie counts as a tie (the judge's verdicts keep their half points)
    temperature: float = 0.7  # the paper's AlpacaEval decoding (a fixed seed per stage); 0: greedy


@dataclass
class LmEvalTask:
    task: str = MISSING
    num_fewshot: int = 0
    metric: str = "acc,none"  # the key of lm-eval's result row


@dataclass
class LmEvalSuite:
    tasks: list[LmEvalTask] = field(default_factory=list)
    apply_chat_template: bool = False


@dataclass
class LmEvalConfig:
    """Benchmark suites through lm-eval's simple_evaluate; options add suites (eval=[openllm,harness6])."""

    suites: dict[str, LmEvalSuite] = field(default_factory=dict)
    backend: str = "hf"  # hf, or vllm (lm-eval's in-process vLLM model)
    batch_size: int = 8
    limit: int | None = None  # examples per task; null: all (a quick look: 100)
    include_path: str | None = None  # a directory of extra task YAMLs
    tensor_parallel_size: int = 1  # vllm backend
    gpu_memory_utilization: float = 0.8  # vllm backend


@dataclass
class DiversityConfig:
    """Diversity of the synthetic prompts of each iteration, and of the seed prompts once."""

    enabled: bool = False
    embedder: str | None = None  # a sentence-transformers directory; null: the packaged all-MiniLM-L6-v2
    max_prompts: int = 2000  # embedded per set (all pairs are compared)
    self_bleu_max: int = 200  # prompts per Self-BLEU estimate (quadratic)


@dataclass
class ExportConfig:
    """Answers in the official tools' formats (AlpacaEval, Arena-Hard, MT-Bench), for their judges."""

    enabled: bool = False
    formats: list[str] = field(default_factory=lambda: ["alpaca_eval", "arena_hard", "mt_bench"])
    # Question files in each tool's own format; null: the validation prompts (single turn)
    alpaca_eval_questions: str | None = None  # JSON list of {instruction, dataset}
    arena_hard_questions: str | None = None  # question.jsonl: {question_id, turns: [{content}]}
    mt_bench_questions: str | None = None  # question.jsonl: {question_id, category, turns: [str, str]}
    temperature: float = 0.7  # the paper's AlpacaEval decoding (vLLM, T 0.7, 2048 tokens)
    max_new_tokens: int = 2048


@dataclass
class EvalConfig:
    """What is measured after each iteration: the validation split always (it selects beta), and the groups that
    the eval options enable (eval=[validation,winrate,diversity,openllm]), every iteration or only the last."""

    name: str = "validation"
    sampled: bool = True  # also evaluate sampled answers (temperature below, fixed seed)
    temperature: float = 0.7
    max_new_tokens: int = 48
    every: str = "iteration"  # iteration: after pi_0 and every iteration; final: after pi_0 and the last one
    winrate: WinRateConfig = field(default_factory=WinRateConfig)
    lm_eval: LmEvalConfig = field(default_factory=LmEvalConfig)
    diversity: DiversityConfig = field(default_factory=DiversityConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


@dataclass
class LoggerConfig:
    """Experiment tracking. The API key is read from WANDB_API_KEY only, never from config."""

    name: str = "wandb"
    project: str = "synpo"
    entity: str | None = None
    mode: str = "auto"  # auto: online if WANDB_API_KEY is set, else offline
    tags: list[str] = field(default_factory=list)
    n_sample_pairs: int = 16  # rows of the sample-pairs table per iteration


@dataclass
class SynpoConfig:
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    method: MethodConfig = MISSING
    scorer: ScorerConfig = MISSING
    generator: GeneratorConfig = MISSING
    trainer: TrainerConfig = MISSING
    sft_trainer: TrainerConfig = MISSING
    eval: EvalConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = 0
    name: str = MISSING
    run_dir: str = MISSING


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="synpo_schema", node=SynpoConfig)
    for group, node in [
        ("model", ModelConfig),
        ("data", DataConfig),
        ("method", MethodConfig),
        ("scorer", ScorerConfig),
        ("generator", GeneratorConfig),
        ("trainer", TrainerConfig),
        ("eval", EvalConfig),
        ("logger", LoggerConfig),
    ]:
        cs.store(group=group, name=f"base_{group}", node=node)


register_configs()

# Keys that define a run's identity: a run directory made with other values is refused, not silently mixed.
IDENTITY_KEYS = ("model.name_or_path", "data.source", "data.path", "method.name", "seed")


def _choice(problems: list[str], cfg: DictConfig, key: str, allowed: tuple) -> None:
    value = OmegaConf.select(cfg, key)
    if value not in allowed:
        problems.append(f"{key}={value!r} is not allowed; choose one of {list(allowed)}")


def _positive(problems: list[str], cfg: DictConfig, key: str, strict: bool = True) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None or (value <= 0 if strict else value < 0):
        problems.append(f"{key}={value!r} must be {'> 0' if strict else '>= 0'}")


def _trainer_problems(cfg: DictConfig, prefix: str) -> list[str]:
    p: list[str] = []
    t = OmegaConf.select(cfg, prefix)
    _choice(p, cfg, f"{prefix}.loss", LOSSES)
    _choice(p, cfg, f"{prefix}.launcher", LAUNCHERS)
    _choice(p, cfg, f"{prefix}.scheduler", SCHEDULERS)
    _choice(p, cfg, f"{prefix}.select_on", SELECT_ON)
    for key in ("learning_rate", "batch_size", "grad_accum", "max_length", "max_prompt_length"):
        _positive(p, cfg, f"{prefix}.{key}")
    if t.num_processes < 1:
        p.append(f"{prefix}.num_processes={t.num_processes} must be >= 1")
    if t.devices is not None and len(t.devices) < t.num_processes:
        p.append(f"{prefix}.devices={list(t.devices)} names fewer GPUs than {prefix}.num_processes={t.num_processes}")
    if t.concurrent_candidates:
        if t.launcher != "accelerate":
            p.append(
                f"{prefix}.concurrent_candidates=true needs {prefix}.launcher=accelerate: candidates train at once "
                "only as separate processes"
            )
        if t.devices is None or len(t.devices) < 2 * t.num_processes:
            p.append(
                f"{prefix}.concurrent_candidates=true needs {prefix}.devices to list at least two sets of "
                f"{prefix}.num_processes={t.num_processes} GPUs (e.g. {prefix}.devices=[0,1,2,3,4,5] with "
                f"num_processes=1); it lists {None if t.devices is None else list(t.devices)}"
            )
        elif len(set(t.devices)) != len(t.devices):
            p.append(f"{prefix}.devices={list(t.devices)} repeats a GPU; concurrent candidates need disjoint GPUs")
    if t.launcher == "accelerate":
        import importlib.util

        from synpo.training.launch import ACCELERATE_DIR

        needs = ["accelerate"] + (["deepspeed"] if t.accelerate_config.startswith("zero") else [])
        for package in needs:
            if importlib.util.find_spec(package) is None:
                p.append(
                    f"{prefix}.launcher=accelerate with {prefix}.accelerate_config={t.accelerate_config!r} needs "
                    f"the {package} package, which is not installed: `pip install {package}`"
                )

        if not (ACCELERATE_DIR / f"{t.accelerate_config}.yaml").is_file():
            known = sorted(x.stem for x in ACCELERATE_DIR.glob("*.yaml"))
            p.append(
                f"{prefix}.accelerate_config={t.accelerate_config!r} is not a file in conf/accelerate; choose "
                f"one of {known}"
            )
    if t.max_steps <= 0 and t.epochs <= 0:
        p.append(f"{prefix}.epochs={t.epochs} and {prefix}.max_steps={t.max_steps}: set epochs > 0 or max_steps > 0")
    if not 0 <= t.warmup_ratio < 1:
        p.append(f"{prefix}.warmup_ratio={t.warmup_ratio} must be in [0, 1)")
    if t.max_prompt_length >= t.max_length:
        p.append(f"{prefix}.max_prompt_length={t.max_prompt_length} must be below {prefix}.max_length={t.max_length}")
    if t.loss in ("simpo", "dpo") and t.beta is not None and t.beta <= 0:
        p.append(f"{prefix}.beta={t.beta} must be > 0 (the preference loss's reward scale)")
    if t.loss == "simpo":
        if t.beta is None:
            if len(t.beta_grid) == 0:
                p.append(
                    f"{prefix}.beta_grid is empty: give at least one beta > 0, e.g. [2,4,6,8,10,12], "
                    f"or a fixed {prefix}.beta"
                )
            bad = [b for b in t.beta_grid if b <= 0]
            if bad:
                p.append(f"{prefix}.beta_grid={list(t.beta_grid)} holds values <= 0 ({bad}); every beta must be > 0")
        if (t.gamma is None) == (t.gamma_beta_ratio is None):
            p.append(
                f"{prefix}.gamma={t.gamma} and {prefix}.gamma_beta_ratio={t.gamma_beta_ratio}: give exactly "
                "one of them (the paper uses gamma=1.6, absolute)"
            )
        for key in ("gamma", "gamma_beta_ratio"):
            if t[key] is not None and t[key] < 0:
                p.append(f"{prefix}.{key}={t[key]} must be >= 0")
    return p


def _spin_problems(cfg: DictConfig) -> list[str]:
    p: list[str] = []
    m, t, n = cfg.method, cfg.trainer, cfg.method.iterations
    if t.loss != "dpo":
        p.append(
            f"trainer.loss={t.loss!r}: {m.name} trains with the DPO loss against the previous iteration; "
            "set trainer=dpo"
        )
    for key in ("beta_schedule", "lr_schedule"):
        sched = t[key]
        if sched is not None:
            if len(sched) < n:
                p.append(f"trainer.{key} has {len(sched)} value(s) but method.iterations={n}: give one per iteration")
            if any(v <= 0 for v in sched):
                p.append(f"trainer.{key}={list(sched)} holds values <= 0; every value must be > 0")
    if t.beta_schedule is None and (t.beta is None or t.beta <= 0):
        p.append(f"trainer.beta={t.beta}: SPIN needs a fixed beta > 0 or a trainer.beta_schedule")
    noise = m.noise
    if not 0 <= noise.token_rate < 1:
        p.append(f"method.noise.token_rate={noise.token_rate} must be in [0, 1)")
    for key in ("temperature", "temperature_final"):
        if noise[key] is not None and noise[key] < 0:
            p.append(f"method.noise.{key}={noise[key]} must be >= 0")
    if noise.temperature_final is not None and noise.temperature is None:
        p.append("method.noise.temperature_final is set but method.noise.temperature is null: give the start too")
    if m.name == "spin_noised" and noise.temperature is None and noise.token_rate == 0:
        p.append("method=spin_noised with no noise: set method.noise.temperature and/or method.noise.token_rate > 0")
    if m.name == "spin_adaptive":
        if m.noise_threshold < 0:
            p.append(f"method.noise_threshold={m.noise_threshold} must be >= 0")
        if m.reverse_threshold < m.noise_threshold:
            p.append(
                f"method.reverse_threshold={m.reverse_threshold} < method.noise_threshold={m.noise_threshold}: "
                "the reverse threshold must be at least the noise threshold"
            )
    return p


def _generator_problems(cfg: DictConfig) -> list[str]:
    p: list[str] = []
    g = cfg.generator
    if g.n != 1:
        p.append(
            f"generator.n={g.n}: the SynPO and SPIN methods use one sample per prompt; set generator.n=1 (n > 1 is "
            "for direct use of the Generator API, e.g. best-of-n)"
        )
    if g.backend == "vllm":
        from synpo.generation.vllm import python_problem

        problem = python_problem(g.python)
        if problem:
            p.append(problem)
        _positive(p, cfg, "generator.tensor_parallel_size")
        if not 0 < g.gpu_memory_utilization <= 1:
            p.append(f"generator.gpu_memory_utilization={g.gpu_memory_utilization} must be in (0, 1]")
        if g.devices is not None and g.tensor_parallel_size > len(g.devices):
            p.append(
                f"generator.tensor_parallel_size={g.tensor_parallel_size} needs that many GPUs but generator.devices "
                f"lists {len(g.devices)}: {list(g.devices)}"
            )
    return p


def _eval_problems(cfg: DictConfig) -> list[str]:
    p: list[str] = []
    e = cfg.eval
    _choice(p, cfg, "eval.every", EVAL_EVERY)
    _choice(p, cfg, "eval.winrate.reference", WINRATE_REFERENCES)
    _choice(p, cfg, "eval.lm_eval.backend", ("hf", "vllm"))
    bad = [f for f in e.export.formats if f not in EXPORT_FORMATS]
    if bad:
        p.append(f"eval.export.formats={list(e.export.formats)}: unknown {bad}; choose from {list(EXPORT_FORMATS)}")
    for key in ("alpaca_eval_questions", "arena_hard_questions", "mt_bench_questions"):
        path = e.export[key]
        if e.export.enabled and path and not Path(path).is_file():
            p.append(f"eval.export.{key}={path!r}: no such file; give the tool's question file or null")
    for name, suite in e.lm_eval.suites.items():
        if not suite.tasks:
            p.append(f"eval.lm_eval.suites.{name} lists no tasks")
    if e.lm_eval.include_path and not Path(e.lm_eval.include_path).is_dir():
        p.append(f"eval.lm_eval.include_path={e.lm_eval.include_path!r} is not a directory of task YAMLs")
    needs = [("lm_eval", "eval.lm_eval.suites")] if e.lm_eval.suites else []
    needs += [("sentence_transformers", "eval.diversity")] if e.diversity.enabled else []
    if needs:
        import importlib.util

        for package, why in needs:
            if importlib.util.find_spec(package) is None:
                p.append(f"{why} needs the {package} package, which is not installed: `pip install -e '.[eval]'`")
    return p


def collect_problems(cfg: DictConfig) -> list[str]:
    """Every problem in ``cfg``, one sentence each."""
    from synpo.modeling import model_path_problem

    p: list[str] = []
    _choice(p, cfg, "method.name", METHODS)
    _choice(p, cfg, "scorer.name", SCORERS)
    _choice(p, cfg, "generator.backend", GENERATOR_BACKENDS)
    _choice(p, cfg, "eval.name", EVALS)
    p += _eval_problems(cfg)
    _choice(p, cfg, "logger.name", LOGGERS)
    _choice(p, cfg, "logger.mode", LOGGER_MODES)
    _choice(p, cfg, "model.dtype", DTYPES)
    _choice(p, cfg, "data.source", DATA_SOURCES)
    if cfg.scorer.name in ("reward_model", "armorm", "pairrm"):
        if not cfg.scorer.name_or_path:
            p.append(f"scorer.name_or_path is null but scorer.name={cfg.scorer.name!r} needs a reward model")
        else:
            problem = model_path_problem(cfg.scorer.name_or_path)
            if problem:
                p.append(f"scorer.name_or_path: {problem}")
    if cfg.scorer.name == "armorm" and not cfg.scorer.trust_remote_code:
        from synpo.scoring.reward_model import ARMORM_RISK

        p.append(ARMORM_RISK)
    if cfg.scorer.name == "judge":
        s = cfg.scorer
        if not s.endpoint or not re.match(r"^https?://", s.endpoint):
            p.append(
                f"scorer.endpoint={s.endpoint!r}: the judge needs an OpenAI-compatible base URL such as "
                "http://127.0.0.1:8000/v1 (`vllm serve <model>`) or https://api.openai.com/v1"
            )
        if not s.name_or_path:
            p.append("scorer.name_or_path is null but scorer=judge needs the model name the endpoint serves")
        if s.api_key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", s.api_key_env):
            # The value is not echoed: it may be the key itself.
            p.append(
                "scorer.api_key_env is not an environment variable name: give the NAME of the variable that holds "
                "the key (e.g. OPENAI_API_KEY), never the key"
            )
        _positive(p, cfg, "scorer.timeout_s")
        _positive(p, cfg, "scorer.concurrency")
        _positive(p, cfg, "scorer.max_retries", strict=False)
    if cfg.scorer.trust_remote_code and cfg.scorer.name != "armorm":
        p.append(
            f"scorer.trust_remote_code=true with scorer.name={cfg.scorer.name!r}: it is only ever needed for "
            "armorm; set it to false"
        )
    _choice(p, cfg, "scorer.dtype", DTYPES)
    problem = model_path_problem(cfg.model.name_or_path)
    if problem:
        p.append(f"model.name_or_path: {problem}")
    if cfg.model.trust_remote_code and cfg.model.name_or_path.startswith("builtin:"):
        p.append("model.trust_remote_code=true is not needed for built-in models; set it to false")
    _choice(p, cfg, "data.keywords", ("tinyworld", "corpus"))
    if cfg.data.keywords == "corpus" and not cfg.data.keyword_corpus and cfg.method.name == "synpo":
        p.append("data.keyword_corpus is null but data.keywords=corpus: give a local text file of paragraphs")
    if cfg.data.source == "hf" and not cfg.data.hf_name:
        p.append("data.hf_name is null but data.source=hf: give a datasets name, e.g. HuggingFaceH4/ultrachat_200k")
    if cfg.data.source == "jsonl" and not cfg.data.path:
        p.append("data.path is null but data.source=jsonl: give the seed JSONL file (rows {'prompt', 'answer'})")
    for key in (
        "data.n_train",
        "data.n_val",
        "method.iterations",
        "method.n_prompts",
        "method.pairs_per_iteration",
        "generator.max_new_tokens",
        "generator.batch_size",
        "generator.shard_size",
        "scorer.batch_size",
        "scorer.shard_size",
        "eval.max_new_tokens",
        "method.generator_keywords",
    ):
        _positive(p, cfg, key)
    if not 0 < cfg.method.max_repetition <= 1:
        p.append(f"method.max_repetition={cfg.method.max_repetition} must be in (0, 1]")
    for key in ("generator.temperature", "eval.temperature"):
        _positive(p, cfg, key, strict=False)
    if not 0 < cfg.generator.top_p <= 1:
        p.append(f"generator.top_p={cfg.generator.top_p} must be in (0, 1]")
    p += _generator_problems(cfg)
    if cfg.scorer.threshold < 0:
        p.append(f"scorer.threshold={cfg.scorer.threshold} must be >= 0 (a pair is kept if its score gap exceeds it)")
    _choice(p, cfg, "data.answers", ANSWER_STYLES)
    if not 0 <= cfg.data.sft_noise <= 1:
        p.append(f"data.sft_noise={cfg.data.sft_noise} must be in [0, 1]")
    if cfg.method.name == "synpo" and cfg.trainer.loss != "simpo":
        p.append(f"trainer.loss={cfg.trainer.loss!r}: SynPO trains the policy with SimPO; set trainer=simpo")
    if cfg.method.name in SPIN_METHODS:
        p += _spin_problems(cfg)
    if cfg.sft_trainer.loss != "sft":
        p.append(
            f"sft_trainer.loss={cfg.sft_trainer.loss!r}: the generator and improver use SFT; keep sft_trainer=sft"
        )
    p += _trainer_problems(cfg, "trainer")
    p += _trainer_problems(cfg, "sft_trainer")
    for secret_key in _secret_like_keys(OmegaConf.to_container(cfg, resolve=False)):
        p.append(
            f"{secret_key}: secrets do not belong in the config (it is saved with the run); put the W&B key "
            "in the WANDB_API_KEY environment variable"
        )
    return p


_SECRET_KEY = re.compile(r"(^|_)(api_?key|token|secret|password)$", re.IGNORECASE)


def is_secret_key(name: str) -> bool:
    """Whether a config key names a secret (``api_key``, ``hf_token``, ...): such keys are refused and redacted."""
    return bool(_SECRET_KEY.search(str(name)))


def _secret_like_keys(node: Any, prefix: str = "") -> list[str]:
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if is_secret_key(k) and v:
                found.append(key)
            found += _secret_like_keys(v, key)
    return found


def validate(cfg: DictConfig) -> None:
    """Raise one UserError listing every problem in ``cfg``; return None when it is fine."""
    problems = collect_problems(cfg)
    if problems:
        raise UserError(
            f"The config has {len(problems)} problem(s):\n  - " + "\n  - ".join(problems) + "\nFix them on the "
            "command line (key=value) or in the YAML under conf/; `python run.py --cfg job` prints the composed config."
        )


def betas(cfg: DictConfig) -> list[float]:
    """The betas to train this iteration: the fixed ``trainer.beta`` if set, else ``trainer.beta_grid``."""
    t = cfg.trainer
    return [float(t.beta)] if t.beta is not None else [float(b) for b in t.beta_grid]


def gamma_for(cfg: DictConfig, beta: float) -> float:
    t = cfg.trainer
    return float(t.gamma) if t.gamma is not None else float(t.gamma_beta_ratio) * beta


def hparams(trainer: DictConfig, model: DictConfig, seed: int):
    """Training hyperparameters of a trainer group, for synpo.training."""
    from synpo.training.common import HParams

    return HParams(
        learning_rate=trainer.learning_rate,
        epochs=trainer.epochs,
        max_steps=trainer.max_steps,
        batch_size=trainer.batch_size,
        grad_accum=trainer.grad_accum,
        warmup_ratio=trainer.warmup_ratio,
        scheduler=trainer.scheduler,
        optimizer=trainer.optimizer,
        weight_decay=trainer.weight_decay,
        max_length=trainer.max_length,
        max_prompt_length=trainer.max_prompt_length,
        seed=seed,
        dtype=model.dtype,
        save_steps=trainer.save_steps,
    )
