"""Generation backends behind the ``Generator`` protocol (``protocol.py``), and the factory for the configured one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from synpo.errors import UserError
from synpo.generation.protocol import Generator

if TYPE_CHECKING:  # the vLLM worker imports this package in an environment without omegaconf
    from omegaconf import DictConfig


def make_generator(cfg: DictConfig) -> Generator:
    g = cfg.generator
    if g.backend == "hf":
        from synpo.generation.hf import HFGenerator

        return HFGenerator(
            batch_size=g.batch_size,
            shard_size=g.shard_size,
            dtype=cfg.model.dtype,
            trust_remote_code=cfg.model.trust_remote_code,
        )
    if g.backend == "vllm":
        from synpo.generation.vllm import VLLMGenerator

        return VLLMGenerator(
            python=g.python,
            tensor_parallel_size=g.tensor_parallel_size,
            gpu_memory_utilization=g.gpu_memory_utilization,
            dtype=cfg.model.dtype,
            max_model_len=g.max_model_len,
            shard_size=g.shard_size,
            devices=None if g.devices is None else list(g.devices),
            enforce_eager=g.enforce_eager,
            stall_timeout_s=g.stall_timeout_s,
            trust_remote_code=cfg.model.trust_remote_code,
        )
    raise UserError(f"generator.backend={g.backend!r} is not available; choose 'hf' or 'vllm'.")
