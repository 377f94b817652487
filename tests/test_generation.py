"""HF generation keeps the last checkpoint it loaded: consecutive stages with one model read it from disk once,
with the same answers as a fresh load, and a checkpoint rewritten in place, or a release, loads it again."""

import shutil

import torch

from synpo.generation.hf import HFGenerator
from synpo.generation.protocol import SamplingParams
from synpo.modeling import load_causal_lm, resolve_model_path

PROMPTS = ["Add the numbers 3 and 4.", "Uppercase the word rose.", "Sort the numbers: 28 6 62 14 99"]


def test_one_checkpoint_is_loaded_once_and_reloaded_when_it_changes(tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(resolve_model_path("builtin:tiny-sft"), model_dir)
    sampled, greedy = SamplingParams(0.7, 1.0, 24, seed=3), SamplingParams(0.0, 1.0, 24, seed=3)
    gen = HFGenerator(batch_size=2)
    first = gen.generate(str(model_dir), PROMPTS, sampled)
    assert gen.generate(str(model_dir), PROMPTS, sampled) == first  # reseeded per shard: the kept model agrees
    before = gen.generate(str(model_dir), PROMPTS, greedy)
    assert gen.loads == 1
    assert HFGenerator(batch_size=2).generate(str(model_dir), PROMPTS, sampled) == first  # as a fresh load

    model = load_causal_lm(str(model_dir))  # a redone training stage writes new weights into the same directory
    with torch.no_grad():
        model.lm_head.weight.copy_(torch.roll(model.lm_head.weight, 1, dims=0))
    model.save_pretrained(model_dir)
    after = gen.generate(str(model_dir), PROMPTS, greedy)
    assert gen.loads == 2 and after != before

    gen.release()
    assert gen.generate(str(model_dir), PROMPTS, greedy) == after and gen.loads == 3


def test_a_training_job_frees_the_kept_model(tmp_path):
    """Context.train releases the generator first: the model kept from the last generation stage does not sit in
    memory beside the one being trained."""
    from conftest import compose

    from synpo.artifacts import RunDir
    from synpo.pipeline import open_context

    cfg = compose(["logger=none"])
    ctx = open_context(cfg, RunDir(tmp_path / "run"))
    ctx.generate("answers", ctx.pi0, PROMPTS, tmp_path / "answers.jsonl", [])
    assert ctx.generator._loaded is not None
    examples = [{"prompt": r["prompt"], "completion": r["answer"]} for r in ctx.seed_train[:4]]
    ctx.train_sft("sft", examples, tmp_path / "sft", [])
    assert ctx.generator._loaded is None and (tmp_path / "sft" / "config.json").is_file()


def _tiny_batch(prompts):
    from synpo.modeling import load_tokenizer, render_prompts

    tok = load_tokenizer("builtin:tiny-sft")
    tok.padding_side = "left"
    model = load_causal_lm("builtin:tiny-sft").eval()
    enc = tok(render_prompts(tok, prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    return tok, model, enc


def test_greedy_decoding_is_generate_token_for_token():
    """The decode loop drops a row from the batch when it stops; greedy answers still equal ``model.generate``'s,
    for prompts of other lengths (left padding), rows that stop at other steps, and rows cut off by the limit."""
    from synpo.generation.hf import decode

    prompts = [*PROMPTS, "Reverse the words: snake cloud bread", "Count the letters in the word zebra."]
    tok, model, enc = _tiny_batch(prompts)
    assert len(set(enc["attention_mask"].sum(dim=1).tolist())) > 1  # the prompts really are padded
    for limit in (3, 24):
        ref = model.generate(
            **enc,
            do_sample=False,
            max_new_tokens=limit,
            pad_token_id=tok.pad_token_id,
            eos_token_id=[tok.eos_token_id],
        )
        ref = ref[:, enc["input_ids"].shape[1] :].tolist()
        got = decode(
            model, enc["input_ids"], enc["attention_mask"], SamplingParams(0.0, 1.0, limit), [tok.eos_token_id]
        )
        for row, (tokens, stopped) in zip(ref, got, strict=True):
            end = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
            assert tokens == row[:end] and stopped == (tok.eos_token_id in row)
        if limit == 24:
            lengths = {len(tokens) for tokens, _ in got}
            assert all(stopped for _, stopped in got) and len(lengths) > 1  # rows left the batch at other steps
        else:
            assert not all(stopped for _, stopped in got)  # some rows are cut off by the limit


def test_sampling_draws_from_the_tempered_nucleus():
    """``next_token`` draws from softmax(logits / T), within the top_p nucleus, the most likely token always in."""
    from synpo.generation.hf import next_token

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(40_000, 1)
    torch.manual_seed(0)
    for temperature in (1.0, 0.5):
        expected = torch.softmax(logits[0] / temperature, dim=-1)
        counts = torch.bincount(next_token(logits, temperature, 1.0), minlength=4) / len(logits)
        assert torch.allclose(counts, expected, atol=0.01), (temperature, counts, expected)
    # top_p = 0.8 at T = 1: probabilities 0.644, 0.237, 0.087, 0.032; the first two reach 0.88 >= 0.8
    counts = torch.bincount(next_token(logits, 1.0, 0.8), minlength=4) / len(logits)
    assert counts[2:].sum() == 0 and abs(counts[0] - 0.644 / 0.881) < 0.01
    assert next_token(logits[:5], 1.0, 0.01).tolist() == [0] * 5  # a tiny nucleus keeps the argmax only
    assert next_token(torch.tensor([[0.0, 5.0, 1.0]]), 0.0, 1.0).tolist() == [1]  # T = 0: greedy


def test_n_samples_per_prompt_come_prompt_major():
    from synpo.generation.hf import decode

    tok, model, enc = _tiny_batch(PROMPTS)
    torch.manual_seed(0)
    got = decode(model, enc["input_ids"], enc["attention_mask"], SamplingParams(1.5, 1.0, 12, n=4), [tok.eos_token_id])
    assert len(got) == 4 * len(PROMPTS)
    greedy = decode(
        model, enc["input_ids"], enc["attention_mask"], SamplingParams(0.0, 1.0, 12, n=4), [tok.eos_token_id]
    )
    for i in range(len(PROMPTS)):  # greedy: a prompt's 4 samples are one answer, and the prompts' answers differ
        assert len({tuple(t) for t, _ in greedy[4 * i : 4 * i + 4]}) == 1
    assert len({tuple(greedy[4 * i][0]) for i in range(len(PROMPTS))}) == len(PROMPTS)
    assert len({tuple(t) for t, _ in got}) > len(PROMPTS)  # at T = 1.5 the samples of a prompt differ


def test_sampled_answers_do_not_depend_on_batches_or_shards(tmp_path):
    """Each prompt samples from its own stream: other batch and shard sizes (speed settings, outside every
    fingerprint) give the same answers, and a resumed shard directory gives what an uninterrupted call gave."""
    from synpo.generation.hf import HFGenerator

    prompts = [f"Add the numbers {a} and {a + 2}." for a in range(10)]
    sampling = SamplingParams(1.2, 0.95, 12, seed=7, n=2)
    one = HFGenerator(batch_size=16, shard_size=16).generate("builtin:tiny-sft", prompts, sampling)
    other = HFGenerator(batch_size=3, shard_size=4).generate("builtin:tiny-sft", prompts, sampling, tmp_path / "s")
    assert [str(c) for c in one] == [str(c) for c in other]
    assert len({str(c) for c in one}) > len(prompts) // 2  # really sampled: the answers differ
    (tmp_path / "s" / "shard-00001.jsonl").unlink()  # as if a crash had lost the middle shard
    resumed = HFGenerator(batch_size=5, shard_size=4).generate("builtin:tiny-sft", prompts, sampling, tmp_path / "s")
    assert [str(c) for c in resumed] == [str(c) for c in one]
    reseeded = HFGenerator().generate("builtin:tiny-sft", prompts, SamplingParams(1.2, 0.95, 12, seed=8, n=2))
    assert [str(c) for c in reseeded] != [str(c) for c in one]


def test_a_stop_string_ends_an_answer_and_is_kept_in_it():
    """The prompt generator's sampling stops after </question>; here the same mechanism on greedy answers: the answer
    ends right after the stop string (kept), is a prefix of the answer without it, and counts as stopped."""
    from synpo.generation.hf import HFGenerator

    prompts = ["Reverse the words: snake cloud bread", "Add the numbers 3 and 4."]
    free = HFGenerator().generate("builtin:tiny-sft", prompts, SamplingParams(0.0, 1.0, 32))
    stop = str(free[0]).split()[1]  # the middle word of the first answer ("bread cloud snake")
    cut = HFGenerator().generate("builtin:tiny-sft", prompts, SamplingParams(0.0, 1.0, 32, stop=(stop,)))
    first = str(cut[0])
    assert first.endswith(stop) and str(free[0]).startswith(first) and len(first) < len(str(free[0]))
    assert cut[0].finish_reason == "stop" and cut[0].tokens < free[0].tokens
    for c, f in zip(cut, free, strict=True):  # an answer without the string is untouched
        assert stop in str(f) or (str(c) == str(f) and c.finish_reason == f.finish_reason)


def test_greedy_and_sampled_groups_share_a_decode_loop_and_give_each_group_s_answers(monkeypatch):
    """Validation asks for its prompts greedy and sampled: the two groups run as one batch (rows at their own
    temperature, each drawing its own group's stream), and every answer equals the one its group alone gives.
    Groups that differ in more than temperature and seed run apart."""
    from synpo.generation import hf

    prompts = [f"Add the numbers {a} and {a + 5}." for a in range(6)] + PROMPTS
    greedy, sampled = SamplingParams(0.0, 1.0, 16, seed=4), SamplingParams(1.3, 1.0, 16, seed=4)
    gen = HFGenerator(batch_size=64)
    widths = []
    decode = hf.decode

    def counting(model, input_ids, *args, **kw):
        widths.append(input_ids.shape[0])
        return decode(model, input_ids, *args, **kw)

    monkeypatch.setattr(hf, "decode", counting)
    together = gen.generate_groups("builtin:tiny-sft", [(prompts, greedy), (prompts[:5], sampled)])
    assert widths == [len(prompts) + 5]  # one loop for both groups
    monkeypatch.setattr(hf, "decode", decode)
    alone = [gen.generate("builtin:tiny-sft", prompts, greedy), gen.generate("builtin:tiny-sft", prompts[:5], sampled)]
    assert [[str(c) for c in g] for g in together] == [[str(c) for c in g] for g in alone]
    assert [str(c) for c in together[1]] != [str(c) for c in together[0][:5]]  # the sampled rows really sampled

    longer = SamplingParams(1.3, 1.0, 20, seed=4)
    monkeypatch.setattr(hf, "decode", counting)
    widths.clear()
    apart = gen.generate_groups("builtin:tiny-sft", [(prompts, greedy), (prompts[:5], longer)])
    assert widths == [len(prompts), 5]
    assert [str(c) for c in apart[0]] == [str(c) for c in alone[0]]
