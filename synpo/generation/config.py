"""The generator group's registry: each backend's own schema, factory and checks (``GENERATORS``); a backend's code
lives in its module (``hf.py``, ``vllm.py``), imported only when it is built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from synpo.registry import Registry
from synpo.schema import spec

if TYPE_CHECKING:
    from synpo.generation.protocol import Generator


@dataclass
class GeneratorConfig:
    """What every backend has: the sampling settings, and the shards its stages write."""

    backend: str = spec("hf", "the backend (synpo.generation.config.GENERATORS)")
    temperature: float = spec(0.7, "the paper's sampling temperature", ge=0)
    top_p: float = spec(1.0, "nucleus sampling", gt=0, le=1)
    max_new_tokens: int = spec(48, "new tokens per answer", gt=0)
    # Speed and placement only, here and in each backend's fields below: none of these enters a stage's fingerprint,
    # so changing one (after an out-of-memory error, on another machine) never redoes a finished stage. Each sampled
    # answer draws its own random stream, so batches and shards do not change which answer a prompt gets; a GPU's
    # kernels, and bf16 ones on a CPU, may still differ in the last bit with the batch's composition, and a model
    # can turn that into another answer (SmolLM2 in bf16: 51 of 64 sampled answers the same at 64 rows as at 48).
    shard_size: int = spec(
        256,
        "prompts per shard file; a crash loses at most one shard (a changed size restarts an unfinished stage)",
        gt=0,
        speed=True,
    )


@dataclass
class HFGeneratorConfig(GeneratorConfig):
    """In-process transformers generation."""

    batch_size: int = spec(64, "prompts per decode batch (each of their n samples is a row)", gt=0, speed=True)


@dataclass
class VLLMGeneratorConfig(GeneratorConfig):
    """vLLM in a child process (its own interpreter), started per stage and stopped after it."""

    python: str | None = spec(None, "the interpreter of the environment that has vLLM; null: this one", speed=True)
    tensor_parallel_size: int = spec(1, "GPUs one engine spans", gt=0, speed=True)
    data_parallel_size: int = spec(
        1,
        "engines at once, each on its own tensor_parallel_size GPUs and every data_parallel_size-th shard; a model "
        "that fits one GPU runs fastest as one engine per GPU",
        gt=0,
        speed=True,
    )
    gpu_memory_utilization: float = spec(
        0.9, "share of GPU memory (on CPU: of RAM) for the engine", gt=0, le=1, speed=True
    )
    max_model_len: int | None = spec(
        None, "context length; null: the model's own (a prompt over it is an error, never cut)", gt=0, speed=True
    )
    enforce_eager: bool = spec(False, "skip CUDA graph capture (faster start, slower decoding)", speed=True)
    stall_timeout_s: float = spec(
        1800.0,
        "kill the worker (and its engine) when it reports no progress for this long: loading, or a shard",
        gt=0,
        speed=True,
    )
    devices: list[int] | None = spec(
        None, "GPU ids for the worker (CUDA_VISIBLE_DEVICES); null: all", ge=0, speed=True
    )


def _vllm_problems(cfg: DictConfig) -> list[str]:
    from synpo.generation.vllm import python_problem

    g, p = cfg.generator, []
    if problem := python_problem(g.python):
        p.append(problem)
    need = g.tensor_parallel_size * g.data_parallel_size
    if g.devices is not None and need > len(g.devices):
        p.append(
            f"generator.tensor_parallel_size={g.tensor_parallel_size} x data_parallel_size={g.data_parallel_size} "
            f"needs {need} GPUs but generator.devices lists {len(g.devices)}: {list(g.devices)}"
        )
    return p


def _hf(g: DictConfig, model: DictConfig) -> Generator:
    from synpo.generation.hf import HFGenerator

    return HFGenerator(
        batch_size=g.batch_size,
        shard_size=g.shard_size,
        dtype=model.dtype,
        trust_remote_code=model.trust_remote_code,
    )


def _vllm(g: DictConfig, model: DictConfig) -> Generator:
    from synpo.generation.vllm import VLLMGenerator

    return VLLMGenerator(
        python=g.python,
        tensor_parallel_size=g.tensor_parallel_size,
        gpu_memory_utilization=g.gpu_memory_utilization,
        dtype=model.dtype,
        max_model_len=g.max_model_len,
        shard_size=g.shard_size,
        devices=None if g.devices is None else list(g.devices),
        enforce_eager=g.enforce_eager,
        stall_timeout_s=g.stall_timeout_s,
        trust_remote_code=model.trust_remote_code,
        data_parallel_size=g.data_parallel_size,
    )


@dataclass(frozen=True)
class GeneratorEntry:
    """A backend: its schema, its factory (from its own block and the model's), its checks."""

    schema: type
    build: Callable[[DictConfig, DictConfig], Generator]
    check: Callable[[DictConfig], list[str]] | None = None

    def problems(self, cfg: DictConfig) -> list[str]:
        return self.check(cfg) if self.check else []


GENERATORS: Registry[GeneratorEntry] = Registry(
    "generator",
    {"hf": GeneratorEntry(HFGeneratorConfig, _hf), "vllm": GeneratorEntry(VLLMGeneratorConfig, _vllm, _vllm_problems)},
    selector="backend",
)


def make_generator(g: DictConfig, model: DictConfig) -> Generator:
    """The backend that the block ``g`` (``cfg.generator``) selects, for models of the block ``model``."""
    return GENERATORS[g.backend].build(g, model)
