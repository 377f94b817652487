"""The model arithmetic a stage records (``synpo.compute``): generated and trained tokens counted exactly, the FLOP
formula, and the per-kind totals a run writes to results.json (what the floor benchmark divides by)."""

from synpo.compute import add_compute, flops, model_shape, sequence_compute
from synpo.generation.protocol import SamplingParams, generation_compute
from synpo.modeling import resolve_model_path

TINY = "builtin:tiny-sft"


def test_sequence_compute_counts_causal_context():
    assert sequence_compute([3]) == {"tokens": 3, "attn": 6}  # positions attend to 1, 2 and 3 tokens
    assert sequence_compute([3, 1], passes=3) == {"tokens": 12, "attn": 21}
    assert add_compute({"tokens": 1, "attn": 2}, {"tokens": 3, "attn": 4}) == {"tokens": 4, "attn": 6}
    assert add_compute(None, None) is None


def test_flops_from_the_model_shape():
    shape = model_shape(resolve_model_path(TINY))
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(TINY))
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert shape["matmul_params"] == linear
    assert shape["layers"] == model.config.num_hidden_layers and shape["width"] == model.config.hidden_size
    # 2 x params per token, 4 x layers x width per attended position
    assert flops({"tokens": 10, "attn": 55}, shape) == 2 * linear * 10 + 4 * shape["layers"] * shape["width"] * 55


def test_generation_counts_prompt_and_generated_tokens_exactly(tmp_path):
    """Each completion carries its rendered prompt's tokens and its generated tokens up to and including the stop
    token (not the padding of a finished row in the batch); a resumed shard keeps them."""
    from synpo.generation.hf import HFGenerator
    from synpo.modeling import load_tokenizer, render_prompts

    prompts = ["Add the numbers 3 and 4.", "Uppercase the word rose.", "Sort the numbers: 28 6 62 14 99"]
    gen = HFGenerator(batch_size=3)
    out = gen.generate(TINY, prompts, SamplingParams(temperature=0, max_new_tokens=48), tmp_path)
    tok = load_tokenizer(TINY)
    rendered = render_prompts(tok, prompts)
    assert [c.prompt_tokens for c in out] == [len(tok(r, add_special_tokens=False).input_ids) for r in rendered]
    assert len({c.prompt_tokens for c in out}) > 1  # left padding is not counted
    for c in out:
        assert c.finish_reason == "stop"
        assert c.tokens == len(tok(str(c), add_special_tokens=False).input_ids) + 1  # + the EOS that ended it
    cut = gen.generate(TINY, prompts, SamplingParams(temperature=0, max_new_tokens=2))
    assert [c.tokens for c in cut] == [2, 2, 2]
    again = gen.generate(TINY, prompts, SamplingParams(temperature=0, max_new_tokens=48), tmp_path)
    assert [(c.prompt_tokens, c.tokens) for c in again] == [(c.prompt_tokens, c.tokens) for c in out]
    assert generation_compute(out) == sequence_compute(c.prompt_tokens + c.tokens for c in out)


def _dataset_lengths(ds, columns, cap):
    return [min(cap, sum(len(row[c]) for c in cols)) for cols in columns for row in ds]


def test_trained_compute_matches_the_tokenized_dataset(tmp_path):
    """SimPO (CPO layout), DPO (prompt and answers apart, plus the reference forward) and SFT: the compute is the
    trainer's own tokenized sequences, capped at max_length, times the passes."""
    from synpo.training.common import HParams, trained_compute
    from synpo.training.dpo import build_dpo_trainer
    from synpo.training.sft import build_sft_trainer
    from synpo.training.simpo import build_simpo_trainer

    path = resolve_model_path(TINY)
    pairs = [
        {"prompt": "Add the numbers 3 and 4.", "chosen": "The sum is 7.", "rejected": "8"},
        {"prompt": "Uppercase the word rose.", "chosen": "ROSE", "rejected": "rose rose rose rose"},
    ]
    hp = HParams(batch_size=2, max_length=16)
    simpo, _ = build_simpo_trainer(path, pairs, tmp_path / "s", hp, 2.0, 1.6)
    lengths = _dataset_lengths(simpo.train_dataset, [("chosen_input_ids",), ("rejected_input_ids",)], 16)
    assert max(lengths) == 16  # the cap binds on at least one sequence
    assert trained_compute(simpo.train_dataset, 16, 3.0) == sequence_compute(lengths, 3.0)
    dpo, _ = build_dpo_trainer(path, path, pairs, tmp_path / "d", hp, 0.1)
    cols = [("prompt_ids", "chosen_ids"), ("prompt_ids", "rejected_ids")]
    assert trained_compute(dpo.train_dataset, 16, 4.0) == sequence_compute(
        _dataset_lengths(dpo.train_dataset, cols, 16), 4.0
    )
    sft, _ = build_sft_trainer(
        path, [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs], tmp_path / "f", hp
    )
    sft_lengths = _dataset_lengths(sft.train_dataset, [("input_ids",)], 16)
    assert trained_compute(sft.train_dataset, 16, 3.0) == sequence_compute(sft_lengths, 3.0)


def test_a_training_job_reports_its_passes(tmp_path):
    """A finished job records its tokenized sequences times 3 passes per epoch (SimPO), or 4 with DPO's reference
    model forward; here over 2 epochs."""
    from synpo.training.common import HParams, trained_compute
    from synpo.training.dpo import build_dpo_trainer, train_dpo
    from synpo.training.simpo import build_simpo_trainer, train_simpo

    path = resolve_model_path(TINY)
    pairs = [{"prompt": "Add the numbers 3 and 4.", "chosen": "7", "rejected": "8"}] * 4
    hp = HParams(batch_size=2, epochs=2.0, warmup_ratio=0.0)
    s = train_simpo(path, pairs, tmp_path / "s", hp, 2.0, 1.6)
    d = train_dpo(path, path, pairs, tmp_path / "d", hp, 0.1)
    simpo_ds = build_simpo_trainer(path, pairs, tmp_path / "s2", hp, 2.0, 1.6)[0].train_dataset
    dpo_ds = build_dpo_trainer(path, path, pairs, tmp_path / "d2", hp, 0.1)[0].train_dataset
    assert s["compute"] == trained_compute(simpo_ds, hp.max_length, 2 * 3)
    assert d["compute"] == trained_compute(dpo_ds, hp.max_length, 2 * 4)
