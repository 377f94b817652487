"""DeepSpeed ZeRO-3 and ZeRO-2 across 2 processes on CPU (gloo), for the SimPO, DPO and SFT jobs, through
`launch.launcher=accelerate` exactly as the pipeline launches them.

Each case trains the same examples with the same global batch (in-process: 4 per step; launched: 2 processes x 2)
and checks that the launched job's saved model is complete (every tensor of the model gathered at its shape, none
empty), reloads with ``from_pretrained``, generates, and equals the in-process weights within ``TOLERANCE``. With
gradient checkpointing on in the launched job, the weights still match the in-process job without it.

Marked ``distributed`` (run by CI): each launch starts 2 DeepSpeed ranks, about a minute on 2 cores; the first also
builds DeepSpeed's CPU comm op (cached in ``TORCH_EXTENSIONS_DIR``). The jobs' ``train_loss`` is not compared:
with 2 processes the trainer reports rank 0's share of each batch.
"""

import pytest
import torch
from helpers import PAIRS
from omegaconf import OmegaConf

from synpo.modeling import load_causal_lm, load_tokenizer
from synpo.training.common import HParams
from synpo.training.config import LaunchConfig
from synpo.training.launch import run_training_job

pytestmark = pytest.mark.distributed

TINY = "builtin:tiny-sft"
# Measured here (fp32, 4 steps at lr 1e-3): the launched weights differed from the in-process ones by at most 7.9e-6
# (ZeRO-3 SimPO) while training moved them by up to 2.5e-3; reduction order across ranks explains the difference.
TOLERANCE = 5e-5


def _job(kind: str) -> dict:
    if kind == "simpo":
        return dict(model_path=TINY, pairs=PAIRS, beta=2.0, gamma=1.6)
    if kind == "dpo":
        return dict(model_path=TINY, ref_path=TINY, pairs=PAIRS, beta=0.1)
    return dict(model_path=TINY, examples=[{"prompt": p["prompt"], "completion": p["chosen"]} for p in PAIRS])


def _hp(batch_size: int, gradient_checkpointing: bool = False) -> HParams:
    return HParams(
        batch_size=batch_size,
        max_steps=4,
        learning_rate=1e-3,
        warmup_ratio=0.0,
        max_length=128,
        seed=3,
        gradient_checkpointing=gradient_checkpointing,
    )


def _launch(launcher: str, stage: str = "zero3", processes: int = 1):
    return OmegaConf.structured(LaunchConfig(launcher=launcher, accelerate_config=stage, num_processes=processes))


def _check_complete_and_equal(local_dir, launched_dir) -> None:
    start, local = load_causal_lm(TINY), load_causal_lm(str(local_dir))
    launched = load_causal_lm(str(launched_dir))  # from_pretrained: fails on a missing or misshapen tensor
    want = {k: v.shape for k, v in start.state_dict().items()}
    got = launched.state_dict()
    assert {k: v.shape for k, v in got.items()} == want  # every tensor gathered, at its full shape
    assert all(v.numel() > 0 and torch.isfinite(v).all() for v in got.values())
    diff = max((p - q).abs().max().item() for p, q in zip(local.parameters(), launched.parameters(), strict=True))
    moved = max((p - s).abs().max().item() for p, s in zip(local.parameters(), start.parameters(), strict=True))
    print(f"max |in-process - launched| = {diff:.3g}; max |trained - start| = {moved:.3g}")
    assert moved > 20 * TOLERANCE  # training moved the weights far beyond the tolerance
    assert diff < TOLERANCE
    tok = load_tokenizer(str(launched_dir))
    chat = [{"role": "user", "content": PAIRS[0]["prompt"]}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=False)
    out = launched.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False)
    assert out.shape[1] > len(ids)


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
    local = run_training_job(kind, tmp_path / "local", _launch("inprocess"), hp=_hp(4), **_job(kind))
    launched = run_training_job(
        kind, tmp_path / "launched", _launch("accelerate", stage, 2), hp=_hp(2, checkpointing), **_job(kind)
    )
    assert local["deepspeed_zero_stage"] is None and local["processes"] == 1
    assert launched["deepspeed_zero_stage"] == int(stage[-1]) and launched["processes"] == 2
    assert launched["steps"] == local["steps"] == 4
    # ZeRO-3 creates the model partitioned: right after load each of 2 ranks holds about half of it, not a whole copy
    assert local["held_at_load"] == 1.0
    assert launched["held_at_load"] == (pytest.approx(0.5, abs=0.05) if stage == "zero3" else 1.0)
    assert launched["compute"] == local["compute"]  # both counted the whole dataset's tokens for 4 steps
    _check_complete_and_equal(tmp_path / "local", tmp_path / "launched")
