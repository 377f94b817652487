"""DeepSpeed ZeRO-3 and ZeRO-2 across 2 processes on CPU (gloo), for the SimPO, DPO and SFT jobs, through
`launch.launcher=accelerate` exactly as the pipeline launches them.

Each case trains the same examples with the same global batch (in-process: 4 per step; launched: 2 processes x 2)
and checks that the launched job's saved model is complete (every tensor of the model gathered at its shape, none
empty), reloads with ``from_pretrained``, generates, and equals the in-process weights within ``ZERO_TOLERANCE``. With
gradient checkpointing on in the launched job, the weights still match the in-process job without it.

Marked ``distributed`` (run by CI): each launch starts 2 DeepSpeed ranks, about a minute on 2 cores; the first also
builds DeepSpeed's CPU comm op (cached in ``TORCH_EXTENSIONS_DIR``). The jobs' ``train_loss`` is not compared:
with 2 processes the trainer reports rank 0's share of each batch.
"""

import pytest
from helpers import check_complete_and_equal, distributed_hp, distributed_job
from omegaconf import OmegaConf

from synpo.training.config import LaunchConfig
from synpo.training.launch import run_training_job

pytestmark = pytest.mark.distributed


def _launch(launcher: str, stage: str = "zero3", processes: int = 1):
    return OmegaConf.structured(LaunchConfig(launcher=launcher, accelerate_config=stage, num_processes=processes))


@pytest.mark.parametrize(
    "kind,stage,checkpointing",
    [
        ("simpo", "zero3", False),
        ("dpo", "zero3", False),
        ("sft", "zero3", False),
        ("simpo", "zero2", False),
        ("simpo", "zero3", True),
    ],
)
def test_two_processes_train_the_in_process_weights(tmp_path, kind, stage, checkpointing):
    local = run_training_job(
        kind, tmp_path / "local", _launch("inprocess"), hp=distributed_hp(4), **distributed_job(kind)
    )
    launched = run_training_job(
        kind,
        tmp_path / "launched",
        _launch("accelerate", stage, 2),
        hp=distributed_hp(2, checkpointing),
        **distributed_job(kind),
    )
    assert local["deepspeed_zero_stage"] is None and local["processes"] == 1
    assert launched["deepspeed_zero_stage"] == int(stage[-1]) and launched["processes"] == 2
    assert launched["steps"] == local["steps"] == 4
    # ZeRO-3 creates the model partitioned: right after load each of 2 ranks holds about half of it, not a whole copy
    assert local["held_at_load"] == 1.0
    assert launched["held_at_load"] == (pytest.approx(0.5, abs=0.05) if stage == "zero3" else 1.0)
    assert launched["compute"] == local["compute"]  # both counted the whole dataset's tokens for 4 steps
    check_complete_and_equal(tmp_path / "local", tmp_path / "launched")
