"""The generator config group: its schema and the checks that relate its fields."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from synpo.schema import spec


@dataclass
class GeneratorConfig:
    """The generation backend and its sampling settings."""

    backend: str = spec("hf", "hf: in-process transformers; vllm: a vLLM child process", choices=("hf", "vllm"))
    temperature: float = spec(0.7, "the paper's sampling temperature", ge=0)
    top_p: float = spec(1.0, "nucleus sampling", gt=0, le=1)
    max_new_tokens: int = spec(48, "new tokens per answer", gt=0)
    # Speed and placement only: none of these enters a stage's fingerprint, so changing one (after an out-of-memory
    # error, on another machine) never redoes a finished stage. Each sampled answer draws its own random stream,
    # so batches and shards do not change which answer a prompt gets; a GPU's kernels may still differ in the last
    # bit with the batch's composition.
    batch_size: int = spec(64, "hf: prompts per decode batch (each of their n samples is a row)", gt=0, speed=True)
    shard_size: int = spec(
        256,
        "prompts per shard file; a crash loses at most one shard (a changed size restarts an unfinished stage)",
        gt=0,
        speed=True,
    )
    python: str | None = spec(
        None, "vllm: the interpreter of the environment that has vLLM; null: this one", speed=True
    )
    tensor_parallel_size: int = spec(1, "vllm: GPUs one engine spans", gt=0, speed=True)
    gpu_memory_utilization: float = spec(
        0.9, "vllm: share of GPU memory (on CPU: of RAM) for the engine", gt=0, le=1, speed=True
    )
    max_model_len: int | None = spec(
        None, "vllm: context length; null: the model's own (a prompt over it is an error, never cut)", gt=0, speed=True
    )
    enforce_eager: bool = spec(False, "vllm: skip CUDA graph capture (faster start, slower decoding)", speed=True)
    stall_timeout_s: float = spec(
        1800.0,
        "vllm: kill the worker (and its engine) when it reports no progress for this long: loading, or a shard",
        gt=0,
        speed=True,
    )
    devices: list[int] | None = spec(
        None, "vllm: GPU ids for the worker (CUDA_VISIBLE_DEVICES); null: all", ge=0, speed=True
    )


def generator_problems(cfg: DictConfig) -> list[str]:
    """What is wrong with ``cfg.generator`` beyond its field constraints."""
    g, p = cfg.generator, []
    if g.backend == "vllm":
        from synpo.generation.vllm import python_problem

        if problem := python_problem(g.python):
            p.append(problem)
        if g.devices is not None and g.tensor_parallel_size > len(g.devices):
            p.append(
                f"generator.tensor_parallel_size={g.tensor_parallel_size} needs that many GPUs but generator.devices "
                f"lists {len(g.devices)}: {list(g.devices)}"
            )
    return p
