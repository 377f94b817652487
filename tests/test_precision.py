"""model.dtype=bfloat16 is mixed precision on every device (``synpo.training.precision.weights_dtype``): without
DeepSpeed the trained weights stay float32 and autocast runs the matmuls in bf16; the job saves the model in bf16,
as DeepSpeed's bf16 mode does on a GPU."""

import pytest
from safetensors import safe_open

from synpo.training.common import HParams
from synpo.training.precision import weights_dtype

PAIRS = [
    {"prompt": f"Add the numbers {a} and {a + 1}.", "chosen": f"The sum is {2 * a + 1}.", "rejected": str(a)}
    for a in range(24)
]


def _saved_dtypes(out) -> set:
    with safe_open(str(next(out.glob("*.safetensors"))), "pt") as f:
        return {f.get_tensor(k).dtype for k in f.keys()}


def _changed_share(out) -> float:
    """The share of weights that differ from the start once both are rounded to bf16."""
    from synpo.modeling import load_causal_lm

    start = load_causal_lm("builtin:tiny-sft", "bfloat16").state_dict()
    end = load_causal_lm(str(out), "bfloat16").state_dict()
    changed = sum((end[k] != v).sum().item() for k, v in start.items())
    return changed / sum(v.numel() for v in start.values())


def test_bf16_training_keeps_float32_master_weights_and_saves_bf16(tmp_path, monkeypatch):
    """At lr 3e-5 each AdamW step moves a weight by about 3e-5, under half the bf16 spacing of most of the tiny
    model's weights: steps taken on bf16 weights round away, steps on float32 master weights add up. Measured here
    (6 steps): 59% of the weights changed with master weights, 16% when the weights were held in bf16."""
    import torch
    from omegaconf import OmegaConf

    import synpo.training.precision as precision
    from synpo.training.config import LaunchConfig
    from synpo.training.launch import run_training_job

    hp = HParams(
        batch_size=4, max_steps=6, learning_rate=3e-5, warmup_ratio=0.0, max_length=64, seed=3, dtype="bfloat16"
    )
    launch = OmegaConf.structured(LaunchConfig())
    job = dict(model_path="builtin:tiny-sft", pairs=PAIRS, hp=hp, beta=2.0, gamma=1.6)
    mixed = run_training_job("simpo", tmp_path / "mixed", launch, **job)
    monkeypatch.setattr(precision, "weights_dtype", lambda dtype, args, frozen=False: dtype)  # what bf16 used to mean
    held_bf16 = run_training_job("simpo", tmp_path / "bf16", launch, **job)
    assert mixed["steps"] == held_bf16["steps"] == 6
    assert _saved_dtypes(tmp_path / "mixed") == {torch.bfloat16}
    share_mixed, share_bf16 = _changed_share(tmp_path / "mixed"), _changed_share(tmp_path / "bf16")
    assert share_mixed > 2 * share_bf16, (share_mixed, share_bf16)
    assert mixed["train_loss"] < held_bf16["train_loss"]  # the updates that count lower the loss


def test_float32_is_trained_and_saved_in_float32(tmp_path):
    import torch
    from omegaconf import OmegaConf

    from synpo.training.config import LaunchConfig
    from synpo.training.launch import run_training_job

    hp = HParams(batch_size=4, max_steps=1, learning_rate=1e-3, warmup_ratio=0.0, max_length=64, seed=3)
    job = dict(model_path="builtin:tiny-sft", pairs=PAIRS, hp=hp, beta=2.0, gamma=1.6)
    run_training_job("simpo", tmp_path / "out", OmegaConf.structured(LaunchConfig()), **job)
    assert _saved_dtypes(tmp_path / "out") == {torch.float32}


class _Args:
    def __init__(self, deepspeed=None, plugin=None):
        self.deepspeed, self.deepspeed_plugin = deepspeed, plugin


@pytest.mark.parametrize(
    ("dtype", "args", "frozen", "held"),
    [
        ("bfloat16", _Args(), False, "float32"),  # autocast over float32 master weights
        ("bfloat16", _Args(), True, "bfloat16"),  # a reference model takes no step
        ("bfloat16", _Args(plugin=object()), False, "bfloat16"),  # accelerate's DeepSpeed: its bf16 mode
        ("bfloat16", _Args(deepspeed="ds.json"), False, "bfloat16"),  # a DeepSpeed file given to the trainer
        ("float32", _Args(), False, "float32"),
    ],
)
def test_the_weights_dtype_of_each_setting(dtype, args, frozen, held):
    assert weights_dtype(dtype, args, frozen) == held


def _fused_outputs(trainer):
    """The fused forward's outputs on the trainer's first batch, as its ``compute_loss`` calls it under autocast,
    and the gradient of the summed log-probabilities over every parameter."""
    import torch

    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as accelerate wraps the forward when training starts
        out = trainer.model(**inputs, fused_lm_head=True)
    out.log_probs.sum().backward()
    return out, torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])


def test_bf16_sft_on_a_cpu_scores_the_labelled_positions_as_trls_head_does(tmp_path, monkeypatch):
    """``synpo.training.head``: under bf16 on a CPU the SFT job scores only the labelled positions, the head in bf16
    autocast; TRL's CPU path scores every position with a float32 head. Same positions, same function: the
    log-probabilities agree to bf16's rounding of the logits, relative to their size, and so does the gradient."""
    import torch

    import synpo.training.sft as sft

    hp = HParams(batch_size=4, max_steps=1, max_length=64, seed=3, dtype="bfloat16")
    examples = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in PAIRS]
    trainer = sft.build_sft_trainer("builtin:tiny-sft", examples, tmp_path / "compact", hp)[0]
    assert trainer.model.forward.__code__.co_filename.endswith("head.py")
    assert trainer.model.config._attn_implementation == "eager"  # ``precision.attention``: faster than CPU flash
    compact, compact_grad = _fused_outputs(trainer)
    monkeypatch.setattr(sft, "compact_head_applies", lambda model, dtype: False)
    trl, trl_grad = _fused_outputs(sft.build_sft_trainer("builtin:tiny-sft", examples, tmp_path / "trl", hp)[0])
    mask = trl.label_mask
    assert torch.equal(compact.label_mask, mask) and mask.any() and not mask.all()
    assert not compact.log_probs[~mask].any() and not compact.entropy[~mask].any()
    for name in ("log_probs", "entropy"):
        ours, theirs = getattr(compact, name), getattr(trl, name)
        assert (ours - theirs).norm() < 0.02 * theirs.norm(), name
    assert (compact.is_top1 == trl.is_top1)[mask].float().mean() > 0.9
    assert torch.nn.functional.cosine_similarity(compact_grad, trl_grad, dim=0) > 0.99


def test_float32_sft_keeps_trls_head(tmp_path):
    import synpo.training.sft as sft

    hp = HParams(batch_size=4, max_steps=1, max_length=64, seed=3)
    examples = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in PAIRS]
    trainer = sft.build_sft_trainer("builtin:tiny-sft", examples, tmp_path / "out", hp)[0]
    assert not trainer.model.forward.__code__.co_filename.endswith("head.py")
    assert trainer.model.config._attn_implementation != "eager"


def test_bf16_dpo_on_a_cpu_scores_both_models_with_the_compact_head(tmp_path, monkeypatch):
    """DPO's policy and frozen reference both take ``synpo.training.head`` under bf16 on a CPU; the summed
    log-probabilities, mean logits and entropy TRL's DPO trainer logs agree with those of TRL's own head within
    bf16's rounding, relative to their size."""
    import torch

    import synpo.training.dpo as dpo

    hp = HParams(batch_size=4, max_steps=1, max_length=64, seed=3, dtype="bfloat16")
    keys = ("logps/chosen", "logps/rejected", "logits/chosen", "logits/rejected", "entropy")

    def logged(trainer) -> dict:
        inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
        trainer.model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as accelerate wraps the forward when training starts
            trainer.compute_loss(trainer.model, inputs)
        return {k: trainer._metrics["train"][k][-1] for k in keys}

    trainer = dpo.build_dpo_trainer("builtin:tiny-sft", "builtin:tiny-sft", PAIRS, tmp_path / "c", hp, beta=0.1)[0]
    assert all(m.forward.__code__.co_filename.endswith("head.py") for m in (trainer.model, trainer.ref_model))
    compact = logged(trainer)
    monkeypatch.setattr(dpo, "compact_head_applies", lambda model, dtype: False)
    theirs = logged(dpo.build_dpo_trainer("builtin:tiny-sft", "builtin:tiny-sft", PAIRS, tmp_path / "t", hp, 0.1)[0])
    for k in keys:
        assert abs(compact[k] - theirs[k]) < 0.02 * abs(theirs[k]), (k, compact[k], theirs[k])


def test_bf16_simpo_on_a_cpu_scores_the_answers_as_trls_cpo_trainer_does(tmp_path, monkeypatch):
    """SimPO (TRL's CPO trainer) under bf16 on a CPU takes ``compact_pair_head``: the head on the answer positions
    only, the log-softmax in float32. The length-averaged log-probabilities of both answers, the loss and its
    gradient agree with TRL's full-logits path (a bf16 log-softmax) within bf16's rounding, relative to their size.
    In float32 TRL's own path runs."""
    import torch

    import synpo.training.simpo as simpo

    hp = HParams(batch_size=4, max_steps=1, max_length=64, seed=3, dtype="bfloat16")

    def step(trainer):
        inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
        trainer.model.train()
        trainer.model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as accelerate wraps the forward when training starts
            loss = trainer.compute_loss(trainer.model, inputs)
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
        logged = {k: trainer._stored_metrics["train"][k][-1] for k in ("logps/chosen", "logps/rejected")}
        return loss.item(), logged, grad

    trainer = simpo.build_simpo_trainer("builtin:tiny-sft", PAIRS, tmp_path / "c", hp, beta=2.0, gamma=1.6)[0]
    assert trainer.model.forward.__code__.co_filename.endswith("head.py")
    loss, logged, grad = step(trainer)
    monkeypatch.setattr(simpo, "compact_head_applies", lambda model, dtype: False)
    theirs = simpo.build_simpo_trainer("builtin:tiny-sft", PAIRS, tmp_path / "t", hp, beta=2.0, gamma=1.6)[0]
    assert theirs.concatenated_forward.__code__.co_filename.endswith("cpo_trainer.py")
    their_loss, their_logged, their_grad = step(theirs)
    assert abs(loss - their_loss) < 0.02 * abs(their_loss)
    for k, v in their_logged.items():
        assert abs(logged[k] - v) < 0.02 * abs(v), (k, logged[k], v)
    assert torch.nn.functional.cosine_similarity(grad, their_grad, dim=0) > 0.99

    float32 = HParams(batch_size=4, max_steps=1, max_length=64, seed=3)
    monkeypatch.undo()
    plain = simpo.build_simpo_trainer("builtin:tiny-sft", PAIRS, tmp_path / "f", float32, beta=2.0, gamma=1.6)[0]
    assert not plain.model.forward.__code__.co_filename.endswith("head.py")
