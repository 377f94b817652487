"""Stand-in tokenizers built here whose special tokens, chat templates and generation configs match the real models'
(zephyr-7b-sft-full: no BOS in the template, the tokenizer adds <s>; Llama-3-Instruct-style: <|begin_of_text|> in
the template, the tokenizer adds it too, turns end with <|eot_id|>; ChatML as SmolLM2: no BOS at all), and the token
ids that generation, SFT, SimPO and DPO actually feed the model: BOS exactly once, at the start, and every EOS id of
the generation config stops sampling."""

from pathlib import Path

import pytest
from helpers import STYLES, build_standin

from synpo.modeling import load_tokenizer, stop_token_ids

PAIRS = [{"prompt": "add the numbers 3 and 4", "chosen": "sum is 7", "rejected": "sum is 3"}]


@pytest.fixture(params=sorted(STYLES))
def standin(request, tmp_path):
    return request.param, str(build_standin(tmp_path, request.param))


def _expected_bos(style: str, tok) -> list[int]:
    return [] if STYLES[style][0] is None else [tok.bos_token_id]


def test_generation_prompt_has_bos_once(standin):
    from synpo.modeling import render_prompts

    style, path = standin
    tok = load_tokenizer(path)
    ids = tok(render_prompts(tok, ["add the numbers 3 and 4"])[0], add_special_tokens=False)["input_ids"]
    bos = _expected_bos(style, tok)
    assert ids[: len(bos)] == bos and ids.count(tok.bos_token_id) == len(bos)


def test_every_eos_id_of_the_generation_config_stops(standin):
    from synpo.modeling import load_causal_lm

    style, path = standin
    tok, model = load_tokenizer(path), load_causal_lm(path)
    expected = {tok.convert_tokens_to_ids(t) for t in STYLES[style][5]} | {tok.eos_token_id}
    assert set(stop_token_ids(model, tok)) == expected
    if style == "llama3":
        assert tok.convert_tokens_to_ids("<|eot_id|>") in stop_token_ids(model, tok)  # not only the tokenizer's EOS


def test_sft_simpo_and_dpo_feed_bos_once_and_end_at_the_end_of_turn(standin, tmp_path):
    from synpo.modeling import load_causal_lm
    from synpo.training.common import HParams
    from synpo.training.dpo import build_dpo_trainer
    from synpo.training.simpo import build_simpo_trainer

    style, path = standin
    tok = load_tokenizer(path)
    bos = _expected_bos(style, tok)
    hp = HParams(batch_size=1, max_steps=1, max_length=64, max_prompt_length=32)
    simpo, _ = build_simpo_trainer(path, PAIRS, tmp_path / "s", hp, beta=2.0, gamma=1.0)
    dpo, _ = build_dpo_trainer(path, path, PAIRS, tmp_path / "d", hp, beta=0.1)
    rows = [simpo.train_dataset[0][k] for k in ("chosen_input_ids", "rejected_input_ids")]
    row = dpo.train_dataset[0]
    rows += [row["prompt_ids"] + row["chosen_ids"]]
    rows += [_sft_ids(path, hp, tmp_path / "f")]
    for ids in rows:
        assert ids[: len(bos)] == bos and ids.count(tok.bos_token_id) == len(bos), (style, ids[:6])
    # One end-of-answer token everywhere: the template's end of turn, which generation also stops at
    end = {"zephyr": "</s>", "llama3": "<|eot_id|>", "chatml": "<|im_end|>"}[style]
    assert [tok.convert_ids_to_tokens(ids[-1]) for ids in rows] == [end] * 4, style
    assert tok.convert_tokens_to_ids(end) in stop_token_ids(load_causal_lm(path), tok)


def _sft_ids(path: str, hp, work: Path) -> list[int]:
    from synpo.training.sft import build_sft_trainer

    examples = [{"prompt": "add the numbers 3 and 4", "completion": "sum is 7"}]
    trainer, _ = build_sft_trainer(path, examples, work, hp)
    return list(trainer.train_dataset[0]["input_ids"])


def test_finish_reasons_tell_cut_off_answers(tmp_path):
    """An answer that hits max_new_tokens is marked ``length``, one that ends with EOS ``stop``; a resumed shard
    keeps the reason."""
    from synpo.generation.hf import HFGenerator
    from synpo.generation.protocol import SamplingParams

    gen, prompts = HFGenerator(batch_size=4), ["Add the numbers 3 and 4.", "Uppercase the word rose."]
    short = gen.generate("builtin:tiny-sft", prompts, SamplingParams(temperature=0, max_new_tokens=1))
    assert [c.finish_reason for c in short] == ["length", "length"]
    full = gen.generate("builtin:tiny-sft", prompts, SamplingParams(temperature=0, max_new_tokens=48), tmp_path)
    assert [c.finish_reason for c in full] == ["stop", "stop"]  # the tiny model ends these answers with EOS
    again = gen.generate("builtin:tiny-sft", prompts, SamplingParams(temperature=0, max_new_tokens=48), tmp_path)
    assert [(str(c), c.finish_reason) for c in again] == [(str(c), c.finish_reason) for c in full]


def test_a_cut_off_pair_is_not_trained_on_unless_asked(composed):
    """SynPO's pair filter drops a pair with a side cut off at max_new_tokens (CPO would append EOS to it and train
    it as a complete answer); method.drop_truncated=false keeps it."""
    from types import SimpleNamespace

    from synpo.methods.preference import pair_filter
    from synpo.stages import RunSettings

    good, other = "The sum of 3 and 4 is 7.", "7"
    drop = SimpleNamespace(run=RunSettings.of(composed(["scorer.threshold=0.1"])))
    keep = SimpleNamespace(run=RunSettings.of(composed(["scorer.threshold=0.1", "method.drop_truncated=false"])))
    assert pair_filter(drop, 0.3, good, other, truncated=False)[0]
    assert not pair_filter(drop, 0.3, good, other, truncated=True)[0]
    assert pair_filter(keep, 0.3, good, other, truncated=True)[0]


def test_a_long_prompt_is_cut_as_the_simpo_and_spin_trainers_cut_it(tmp_path):
    """prompt + longer answer over max_length: the rendered prompt keeps its last max_prompt_length tokens (the
    reference trainers' keep_end), the template's BOS and headers whole; a prompt that fits is left alone."""
    from synpo.modeling import render_prompts
    from synpo.training.common import HParams, fit_prompt
    from synpo.training.simpo import build_simpo_trainer

    path = str(build_standin(tmp_path, "llama3"))
    tok = load_tokenizer(path)
    words = [f"{w}" for w in ("add the numbers 3 and 4 sum is 7 uppercase word rose".split() * 6)]
    long_prompt = " ".join(words)  # 66 words, one token each
    hp = HParams(batch_size=1, max_steps=1, max_length=40, max_prompt_length=24)
    cut = fit_prompt(tok, long_prompt, ["sum is 7", "sum is 3"], hp)
    rendered = tok(render_prompts(tok, [cut])[0], add_special_tokens=False)["input_ids"]
    assert len(rendered) == 24 and rendered[0] == tok.bos_token_id  # BOS kept, the prompt at its budget
    assert long_prompt.endswith(cut) and len(cut.split()) == 24 - len(
        tok(render_prompts(tok, [""])[0], add_special_tokens=False)["input_ids"]
    )
    assert fit_prompt(tok, "add the numbers 3 and 4", ["sum is 7"], hp) == "add the numbers 3 and 4"
    pairs = [{"prompt": long_prompt, "chosen": "sum is 7", "rejected": "sum is 3"}]
    trainer, _ = build_simpo_trainer(path, pairs, tmp_path / "s", hp, beta=2.0, gamma=1.0)
    ids = trainer.train_dataset[0]["chosen_input_ids"]
    assert len(ids) == 24 + 3 + 1 and ids[0] == tok.bos_token_id  # prompt, "sum is 7", end of turn


def test_spins_raw_instruction_prompt_skips_the_template_and_keeps_the_plain_text_bos(standin):
    """method.generation_prompt=instruction: the SPIN repo's raw prompt, as vLLM tokenizes a text prompt (BOS where
    the tokenizer adds one to plain text), with no role header of the chat template."""
    from synpo.methods.spin import INSTRUCTION_PROMPT
    from synpo.modeling import render_prompts

    style, path = standin
    tok = load_tokenizer(path)
    raw = INSTRUCTION_PROMPT.format(prompt="add the numbers 3 and 4")
    [text, chat] = render_prompts(tok, [{"raw": raw}, "add the numbers 3 and 4"])
    assert text == (tok.bos_token if STYLES[style][4] else "") + raw
    assert text != chat and "assistant" not in text
    ids = tok(text, add_special_tokens=False)["input_ids"]
    bos = _expected_bos(style, tok)
    assert ids[: len(bos)] == bos and ids.count(tok.bos_token_id) == len(bos)


def test_an_empty_system_turn_opens_the_dpo_prompt_and_counts_in_its_budget(tmp_path):
    """method.system_turn=empty: SPIN's data formatting puts an empty system message before the user's; the prompt
    budget of the cut counts its tokens; a template without a system role is refused in one sentence."""
    from synpo.modeling import render_prompts, system_role_problem
    from synpo.training.common import HParams, fit_prompt, prompt_messages
    from synpo.training.dpo import build_dpo_trainer

    path = str(build_standin(tmp_path, "zephyr"))
    tok = load_tokenizer(path)
    hp = HParams(batch_size=1, max_steps=1, max_length=40, max_prompt_length=24)
    dpo, _ = build_dpo_trainer(path, path, PAIRS, tmp_path / "d", hp, beta=0.1, system="")
    prompt = tok.convert_ids_to_tokens(dpo.train_dataset[0]["prompt_ids"])
    assert prompt[:3] == ["<s>", "<|system|>", "</s>"] and prompt.index("<|user|>") == 3
    long_prompt = " ".join("add the numbers 3 and 4 sum is 7 uppercase word rose".split() * 6)
    cut = fit_prompt(tok, long_prompt, ["sum is 7"], hp, system="")
    rendered = render_prompts(tok, [prompt_messages(cut, "")])[0]
    assert len(tok(rendered, add_special_tokens=False)["input_ids"]) == 24
    assert system_role_problem(path) is None
    no_system = tmp_path / "no_system"
    tok.chat_template = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    tok.save_pretrained(no_system)
    for f in ("config.json", "generation_config.json"):
        if (Path(path) / f).is_file():
            (no_system / f).write_text((Path(path) / f).read_text())
    assert "refuses a system message (no system role)" in system_role_problem(str(no_system))
