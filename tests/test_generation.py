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
