"""A device is held by the stage that uses it: a scorer's model is on the accelerator only while it scores, and every
hand-over (a training job, a generator that runs apart such as a vLLM engine, lm-eval) finds it given back. The
hand-over is tested here on a CPU through the holder's state, which does not depend on there being a GPU."""

import pytest
import torch

from synpo import memory
from synpo.artifacts import RunDir
from synpo.generation.protocol import Completion
from synpo.scoring.reward_model import RewardModelScorer
from synpo.stages import Context, RunSettings


def test_a_held_model_is_placed_while_in_use_and_given_back():
    held = memory.DeviceHeld(torch.nn.Linear(2, 2))
    assert not held.held
    model = held.acquire()
    assert held.held and held.acquire() is model
    held.release()
    assert not held.held and held.device == "cpu"
    held.release()  # twice is harmless


def test_scorer_replicas_share_a_stage_and_give_its_rows(tmp_path):
    """scorer.replicas=2: the missing shards split between two copies of the scorer (on a CPU the copies share the
    host model and each has its own tokenizer), the rows those of one scorer; a lost shard alone is redone; after the
    stage no copy is left on a device."""
    from helpers import build_reward_model

    from synpo.scoring import compare_in_shards, scorer_replicas

    scorer = RewardModelScorer(str(build_reward_model(tmp_path / "rm")), batch_size=2)
    prompts = [f"Add {i} and {i + 1}." for i in range(10)]
    a = [f"The sum is {2 * i + 1}." for i in range(10)]
    b = [f"It is {i}." for i in range(10)]
    one = compare_in_shards(scorer, prompts, a, b, tmp_path / "one", 3)
    two = compare_in_shards(scorer, prompts, a, b, tmp_path / "two", 3, replicas=2)
    assert two == one and len(list((tmp_path / "two").glob("shard-*.jsonl"))) == 4
    copies = scorer_replicas(scorer, 2)
    assert copies[0] is scorer and copies[1].tokenizer is not scorer.tokenizer and copies[1].held is scorer.held
    kept = (tmp_path / "two" / "shard-00000.jsonl").stat().st_mtime_ns
    (tmp_path / "two" / "shard-00002.jsonl").unlink()
    assert compare_in_shards(scorer, prompts, a, b, tmp_path / "two", 3, replicas=2) == one
    assert (tmp_path / "two" / "shard-00000.jsonl").stat().st_mtime_ns == kept
    scorer.release()
    assert not scorer.held.held


class ApartGenerator:
    """A generator that runs in another process (as the vLLM backend does): it records, when it starts, whether the
    run's scorer still holds its model on the device."""

    runs_apart = True

    def __init__(self, scorer):
        self.scorer, self.seen = scorer, []

    def generate(self, model_path, prompts, sampling, shard_dir=None):
        self.seen.append(self.scorer.held.held)
        return [Completion("The sum is 3.", "stop", 4, 5) for _ in prompts]

    def release(self):
        pass


@pytest.fixture
def ctx(tmp_path, composed):
    from helpers import build_reward_model

    scorer = RewardModelScorer(str(build_reward_model(tmp_path / "rm")), batch_size=2)
    return Context(
        run=RunSettings.of(composed()),
        rundir=RunDir(tmp_path / "run"),
        generator=ApartGenerator(scorer),
        scorer=scorer,
        pi0="builtin:tiny-sft",
        seed_train=[],
        seed_val=[],
        seed_record="seed",
    )


def test_every_hand_over_finds_the_scorer_off_the_device(ctx, monkeypatch):
    import synpo.training.launch

    prompts = ["Add 1 and 2.", "Add 2 and 2."]
    ctx.compare("s1", prompts, ["3", "4"], ["4", "5"], ctx.rundir.path("s1.jsonl"), [])
    assert ctx.scorer.held.held  # scoring placed it
    ctx.generate("g1", "builtin:tiny-sft", prompts, ctx.rundir.path("g1.jsonl"), [])
    assert ctx.generator.seen == [False]

    trained = []

    def job(kind, out, launch, **kwargs):
        trained.append(ctx.scorer.held.held)
        return {}

    monkeypatch.setattr(synpo.training.launch, "run_training_job", job)
    ctx.compare("s2", prompts, ["3", "4"], ["5", "4"], ctx.rundir.path("s2.jsonl"), [])
    assert ctx.scorer.held.held
    ctx.train("simpo", ctx.rundir.path("model"))
    assert trained == [False]
