"""The SimPO objective through the exact code path training uses (our TRL CPOTrainer configuration)."""

import math

import pytest
import torch

from synpo.training.common import HParams
from synpo.training.simpo import build_simpo_trainer, train_simpo

PAIRS = [
    {"prompt": "Add the numbers 3 and 4.", "chosen": "The sum of 3 and 4 is 7.", "rejected": "8"},
    {"prompt": "Uppercase the word rose.", "chosen": "The word in uppercase is ROSE.", "rejected": "rose rose"},
]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    work = tmp_path_factory.mktemp("simpo")
    hp = HParams(batch_size=2, max_steps=1, max_length=128)
    trainer, _ = build_simpo_trainer("builtin:tiny-sft", PAIRS, work, hp, beta=2.0, gamma=1.6)
    return trainer


def test_loss_on_hand_computed_logps(trainer):
    """beta=2, gamma=1.6, mean log-probs -1.0 (chosen) and -2.0 (rejected):
    z = beta * (-1.0 - (-2.0)) - gamma = 2.0 - 1.6 = 0.4;  L = -log sigmoid(0.4) = log(1 + 0.670320) = 0.513015.
    Swapping the two gives z = -2.0 - 1.6 = -3.6 and L = log(1 + 36.598234) = 3.626957."""
    losses, chosen_r, rejected_r = trainer.cpo_loss(torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0]))
    assert losses.tolist() == pytest.approx([0.513015, 3.626957], abs=1e-6)
    assert chosen_r.tolist() == pytest.approx([-2.0, -4.0])  # reward = beta * mean log-prob


def _completion_logps(model, tokenizer, prompt_ids, completion_ids):
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].float()
    logp = torch.log_softmax(logits, -1)
    targets = ids[0, 1:]
    token_logps = logp[torch.arange(len(targets)), targets][len(prompt_ids) - 1 :]
    assert len(token_logps) == len(completion_ids)
    return token_logps


def test_length_normalised_logps_and_full_loss(trainer):
    """Per pair: mean over completion tokens of log pi(token), computed here from raw logits, then
    L = mean_i -log sigmoid(beta * (mean_w - mean_l) - gamma); no reference model is involved."""
    model, tok = trainer.model.eval(), trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    with torch.no_grad():
        chosen_logps, rejected_logps = trainer.concatenated_forward(model, batch)[:2]
        loss = trainer.compute_loss(model, batch)
    expected_losses = []
    for i in range(len(PAIRS)):
        row = trainer.train_dataset[i]
        means = []
        for side in ("chosen", "rejected"):
            labels = row[f"{side}_labels"]
            n_prompt = sum(1 for x in labels if x == -100)
            ids = row[f"{side}_input_ids"]
            means.append(_completion_logps(model, tok, ids[:n_prompt], ids[n_prompt:]).mean().item())
        assert chosen_logps[i].item() == pytest.approx(means[0], abs=1e-4)
        assert rejected_logps[i].item() == pytest.approx(means[1], abs=1e-4)
        z = 2.0 * (means[0] - means[1]) - 1.6
        expected_losses.append(math.log1p(math.exp(-z)))
    assert loss.item() == pytest.approx(sum(expected_losses) / len(expected_losses), abs=1e-4)


def test_completion_ends_with_eos_and_prompt_has_one_bos(trainer):
    row = trainer.train_dataset[0]
    tok = trainer.processing_class
    assert row["chosen_input_ids"][-1] == tok.eos_token_id
    assert row["chosen_input_ids"].count(tok.bos_token_id) == 1


def test_training_changes_parameters(tmp_path):
    from synpo.modeling import load_causal_lm

    hp = HParams(batch_size=2, max_steps=2, learning_rate=1e-3, max_length=128, warmup_ratio=0.0)
    stats = train_simpo("builtin:tiny-sft", PAIRS, tmp_path / "model", hp, beta=2.0, gamma=1.6)
    assert stats["steps"] == 2
    before, after = load_causal_lm("builtin:tiny-sft"), load_causal_lm(str(tmp_path / "model"))
    changed = [
        n
        for (n, p), (_, q) in zip(before.named_parameters(), after.named_parameters(), strict=True)
        if not torch.equal(p, q)
    ]
    assert len(changed) > 0
    assert not (tmp_path / "model.partial").exists()


def test_a_one_step_job_changes_the_weights_despite_warmup(tmp_path, caplog):
    """warmup_ratio 0.1 on one step used to be one warmup step at lr 0: SimPO saved pi_0 unchanged. The guard trains
    that step at the full learning rate and says so."""
    from synpo.modeling import load_causal_lm
    from synpo.training.common import optimizer_steps, warmup_setting

    hp = HParams(batch_size=8, learning_rate=1e-3, max_length=128, warmup_ratio=0.1)  # 2 pairs: one step
    assert optimizer_steps(hp, len(PAIRS)) == 1 and warmup_setting(hp, len(PAIRS)) == 0
    assert warmup_setting(hp, 8 * 20) == 0.1  # 20 steps: the usual ceil(0.1 x 20) = 2 warmup steps stay
    stats = train_simpo("builtin:tiny-sft", PAIRS, tmp_path / "model", hp, beta=2.0, gamma=1.6)
    assert stats["steps"] == 1 and "would all be warmup" in caplog.text
    before, after = load_causal_lm("builtin:tiny-sft"), load_causal_lm(str(tmp_path / "model"))
    diffs = [
        (p - q).abs().max().item()
        for (_, p), (_, q) in zip(before.named_parameters(), after.named_parameters(), strict=True)
    ]
    assert max(diffs) > 1e-5
