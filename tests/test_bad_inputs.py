"""The bad-input battery: every wrong config value, data row, model directory, run directory, endpoint, tracking
setting, sweep point and report input gets one clear UserError naming the key or the file (``file:line`` for rows),
before any heavy work; through ``run.py`` it exits 2 without a traceback. In-process cases are fast; a few go
through the real command line, and the cases that need a run up to a filter are marked slow."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, compose
from helpers import MICRO, fails_cleanly, run_cli

from synpo.config import validate
from synpo.errors import UserError
from synpo.modeling import resolve_model_path

TINY = Path(resolve_model_path("builtin:tiny-sft"))


def problems_of(overrides: list[str]) -> str:
    with pytest.raises(UserError) as e:
        validate(compose(overrides))
    return str(e.value)


# --- configs --------------------------------------------------------------------------------------------------------

CONFIG_CASES = [
    (["trainer.beta=-1"], "trainer.beta=-1.0 must be > 0"),
    (["trainer.scheduler=wavy"], "trainer.scheduler='wavy' is not allowed"),
    (["method.iterations=0"], "method.iterations=0 must be > 0"),
    (["scorer.threshold=-1"], "scorer.threshold=-1"),
    (["generator.top_p=0"], "generator.top_p=0"),
    (["launch.devices=[-1]"], "launch.devices=[-1] holds values outside >= 0"),
    (["launch.num_processes=0"], "launch.num_processes=0 must be > 0"),
    (["launch.num_machines=2"], "set launch.launcher=accelerate"),
    (["launch.num_machines=0"], "launch.num_machines=0 must be > 0"),
    (["eval.winrate.reference=bogus"], "eval.winrate.reference='bogus'"),
    (["trainer.warmup_ratio=1.5"], "trainer.warmup_ratio=1.5 must be in [0, 1)"),
    (["experiment=tiny_spin_noised", "method.noise.token_rate=1.0"], "method.noise.token_rate=1.0"),
    (["+logger.api_key=abc"], "logger.api_key: secrets do not belong in the config"),
    (["data=jsonl"], "data.path is null"),
    (["data=jsonl", "data.path=/nonexistent/seed.jsonl"], "/nonexistent/seed.jsonl: file not found"),
    (["trainer=dpo"], "method synpo trains the policy with SimPO; set trainer=simpo"),
    (["experiment=tiny_spin", "trainer=simpo"], "set trainer=dpo"),
    (["trainer.max_prompt_length=400", "trainer.max_length=256"], "must be below trainer.max_length=256"),
    (["trainer.beta_grid=[]"], "trainer.beta_grid is empty"),
    (["scorer=reward_model"], "scorer.name_or_path is null"),
    (["method=sampling_ranking", "trainer=dpo"], "method sampling_ranking trains the policy with SimPO"),
    (["method=sampling_ranking", "method.samples_per_prompt=1"], "method.samples_per_prompt=1 must be >= 2"),
    (["scorer=judge", "method.chosen_content=right"], "method.chosen_content='right' needs a scorer that tells"),
    (["method=self_rewarding", "method.judge_template=long"], "method.judge_template: the template must name exactly"),
    (["method=offline", "method.iterations=2"], "offline is one round of training; set method.iterations=1"),
    (["method=seed_po", "method.iterations=3"], "seed_po is one round of training"),
    (["method=offline", "method.preference_file=null"], "method.preference_file is null"),
    (["method.prompt_source=manual"], "method.manual_prompts is null"),
    (["method.prompt_source=web"], "method.prompt_source='web' is not allowed"),
    (
        ["method.prompt_source=manual", "method.manual_prompts=/nonexistent.jsonl"],
        "/nonexistent.jsonl: file not found",
    ),
    (["data=ultrafeedback", "method=offline"], "method.preference_file=tinyworld needs data.source=tinyworld"),
]


@pytest.mark.parametrize("overrides,needle", CONFIG_CASES, ids=[" ".join(c[0]) for c in CONFIG_CASES])
def test_bad_config_values(overrides, needle):
    assert needle in problems_of(overrides)


USER_FILES = {  # option -> (a good row, a bad row and what the error must say about it)
    "method.preference_file": (
        {"prompt": "p", "chosen": "a", "rejected": "b"},
        {"prompt": "p", "chosen": ""},
        "['chosen', 'rejected']",
    ),
    "method.manual_prompts": ({"prompt": "Write a poem."}, {"text": "no prompt"}, "['prompt']"),
    "method.judge_data": (
        {"prompt": "p", "response": "r", "score": 4},
        {"prompt": "p", "response": "r", "score": 9},
        "'score' must be a number from 0 to 5, not 9",
    ),
}


@pytest.mark.parametrize("key", list(USER_FILES))
def test_bad_rows_of_a_methods_data_file_are_named_by_file_and_line(key, tmp_path):
    good, bad, needle = USER_FILES[key]
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    method = {"method.preference_file": "method=offline", "method.judge_data": "method=self_rewarding"}
    extra = [method.get(key, "method.prompt_source=manual"), f"{key}={path}"]
    text = problems_of(extra)
    assert f"{key}: The " in text and f"{path}:2" in text and needle in text, text
    path.write_text(json.dumps(good) + "\n{not json\n")
    assert f"{path}:2: not valid JSON" in problems_of(extra)


def test_an_srun_launch_outside_a_slurm_allocation_is_a_user_error(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from synpo.training.config import LaunchConfig
    from synpo.training.launch import run_training_job

    monkeypatch.delenv("SLURM_JOB_NODELIST", raising=False)
    launch = OmegaConf.structured(LaunchConfig(launcher="accelerate", num_machines=2))
    with pytest.raises(UserError, match="needs a SLURM allocation"):
        run_training_job("simpo", tmp_path / "out", launch, model_path=str(TINY), pairs=[], beta=2.0, gamma=1.6)


def test_an_srun_launch_without_scontrol_is_a_user_error(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from synpo.training.config import LaunchConfig
    from synpo.training.launch import run_training_job

    monkeypatch.setenv("SLURM_JOB_NODELIST", "node1")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "1")
    monkeypatch.setenv("PATH", str(tmp_path))  # no SLURM client tools
    launch = OmegaConf.structured(LaunchConfig(launcher="accelerate", srun=True))
    with pytest.raises(UserError, match="`scontrol` is not on PATH"):
        run_training_job("simpo", tmp_path / "out", launch, model_path=str(TINY), pairs=[], beta=2.0, gamma=1.6)


ENDPOINTS = ["localhost:8000", "http://[::1/v1", "http://host:port/v1", "ftp://127.0.0.1/v1", "http:///v1"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_bad_judge_endpoints(endpoint):
    msg = problems_of(["scorer=judge", f"scorer.endpoint={endpoint!r}"])
    assert "scorer.endpoint=" in msg and "OpenAI-compatible base URL" in msg


def test_a_malformed_judge_url_at_request_time_is_a_user_error():
    from synpo.scoring.judge import JudgeScorer

    with pytest.raises(UserError, match="scorer.endpoint: .* is not a usable URL"):
        JudgeScorer("http://[::1/v1", "judge", max_retries=0).gaps(["q"], ["a"], ["b"])


def test_an_unreachable_judge_is_a_user_error():
    from synpo.scoring.judge import JudgeScorer

    with pytest.raises(UserError, match="failed after 1 attempts"):
        JudgeScorer("http://127.0.0.1:9/v1", "judge", max_retries=0, timeout_s=2).gaps(["q"], ["a"], ["b"])


# --- tracking -------------------------------------------------------------------------------------------------------


def test_online_wandb_without_a_key_is_refused_before_any_work(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert "needs an API key" in problems_of(["logger.mode=online"])
    monkeypatch.setenv("WANDB_MODE", "online")
    assert "needs an API key" in problems_of([])  # logger.mode=auto follows the user's WANDB_MODE


def test_the_users_wandb_mode_wins_over_auto(monkeypatch):
    from synpo.tracking import wandb_mode

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode("auto") == "offline"  # a key in the environment must not take the run online
    monkeypatch.delenv("WANDB_MODE")
    assert wandb_mode("auto") == "online" and wandb_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "sideways")
    assert "WANDB_MODE='sideways'" in problems_of([])


# --- data rows ------------------------------------------------------------------------------------------------------

GOOD_ROW = json.dumps({"prompt": "Add the numbers 1 and 2.", "answer": "The sum of 1 and 2 is 3."})
SEED_CASES = {
    "latin1": (b'{"prompt": "caf\xe9", "answer": "x"}\n', ":1: not valid UTF-8"),
    "bad json": (f'{GOOD_ROW}\n{{"prompt": oops}}\n'.encode(), ":2: not valid JSON"),
    "array": (f'{GOOD_ROW}\n["a", "b"]\n'.encode(), ":2: expected a JSON object"),
    "no answer": (b'{"prompt": "Add 1 and 2."}\n', ":1: missing or empty string field(s) ['answer']"),
    "empty": (b"", "the seed file holds no rows"),
    "too few rows": ((GOOD_ROW + "\n").encode(), "data.n_val=96 leaves no training rows out of 1"),
}


@pytest.mark.parametrize("name", sorted(SEED_CASES))
def test_bad_seed_files(tmp_path, name):
    content, needle = SEED_CASES[name]
    seed = tmp_path / "seed.jsonl"
    seed.write_bytes(content)
    msg = problems_of(["data=jsonl", f"data.path={seed}"])
    assert needle in msg and str(seed) in msg


@pytest.mark.parametrize("content", ["", "\n\n", "A b. C d."])
def test_a_keyword_corpus_without_keywords_is_refused_before_any_work(tmp_path, content):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(content)
    assert "no paragraph has 3 content words" in problems_of(["data.keywords=corpus", f"data.keyword_corpus={corpus}"])
    assert "file not found" in problems_of(["data.keywords=corpus", f"data.keyword_corpus={tmp_path}/none.txt"])


# --- model directories ----------------------------------------------------------------------------------------------


def _model_copy(tmp_path: Path) -> Path:
    import shutil

    d = tmp_path / "model"
    shutil.copytree(TINY, d)
    return d


def _truncate_weights(d: Path) -> None:
    w = next(d.glob("*.safetensors"))
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])


MODEL_CASES = {
    "missing": (lambda d: __import__("shutil").rmtree(d), "no config.json"),
    "empty config": (lambda d: (d / "config.json").write_text(""), "config.json:1 is not valid JSON"),
    "config is a list": (lambda d: (d / "config.json").write_text("[1]"), "holds a list, not a JSON object"),
    "unknown model type": (
        lambda d: (d / "config.json").write_text(json.dumps({"model_type": "gpt9"})),
        "model_type='gpt9', which this transformers does not know",
    ),
    "truncated weights": (_truncate_weights, "is truncated or not a safetensors file"),
    "no weights": (lambda d: [w.unlink() for w in d.glob("*.safetensors")], "has no weights"),
    "tokenizer not json": (lambda d: (d / "tokenizer.json").write_text("{oops"), "tokenizer.json:1 is not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_bad_model_directories(tmp_path, name):
    breaks, needle = MODEL_CASES[name]
    d = _model_copy(tmp_path)
    breaks(d)
    msg = problems_of([f"model.name_or_path={d}"])
    assert "model.name_or_path" in msg and needle in msg


def test_a_bad_reward_model_directory_names_the_scorer_key(tmp_path):
    d = _model_copy(tmp_path)
    (d / "config.json").write_text("")
    assert "scorer.name_or_path: " in problems_of(["scorer=reward_model", f"scorer.name_or_path={d}"])


def test_loading_a_broken_checkpoint_is_a_user_error(tmp_path):
    from synpo.modeling import load_causal_lm, load_tokenizer

    d = _model_copy(tmp_path)
    _truncate_weights(d)
    with pytest.raises(UserError, match="Could not load the model or tokenizer"):
        load_causal_lm(str(d))
    (d / "tokenizer.json").write_text("{oops")
    with pytest.raises(UserError, match="Could not load the model or tokenizer"):
        load_tokenizer(str(d))


# --- run directories ------------------------------------------------------------------------------------------------


def _run(tmp_path: Path, run_dir: Path, *extra: str) -> str:
    from synpo import pipeline

    cfg = compose([*MICRO, "logger=none", *extra])
    cfg.run_dir = str(run_dir)
    with pytest.raises(UserError) as e:
        pipeline.run(cfg)
    return str(e.value)


def test_run_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert "is a file, not a directory" in _run(tmp_path, f)
    assert "cannot be written" in _run(tmp_path, f / "below")


def test_run_dir_that_cannot_be_written(tmp_path):
    assert "cannot be written" in _run(tmp_path, Path("/proc/synpo-run"))  # not writable, even as root


@pytest.mark.parametrize("content", ["model: [unclosed\n", "- just\n- a list\n", "\x00\x01 binary"])
def test_a_corrupt_config_yaml_is_repairable(tmp_path, content):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(content)
    msg = _run(tmp_path, run_dir)
    assert f"{run_dir / 'config.yaml'} cannot be read" in msg and "delete only config.yaml" in msg
    assert "delete that directory" not in msg


def test_config_yaml_is_written_atomically(tmp_path, monkeypatch):
    """A crash while writing leaves the old config.yaml, never a torn one."""
    from synpo import pipeline
    from synpo.artifacts import RunDir

    rundir = RunDir(tmp_path / "run")
    rundir.config_file.write_text("seed: 0\n")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        pipeline.save_config(rundir, compose([]))
    assert rundir.config_file.read_text() == "seed: 0\n"


# --- report ---------------------------------------------------------------------------------------------------------


def test_report_inputs(tmp_path):
    from synpo.report import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps({"name": "x", "iterations": []}))
    assert main([str(run_dir), "--out", str(tmp_path / "out")]) == 2
    (tmp_path / "out_file").write_text("")
    assert main([str(run_dir), "--out", str(tmp_path / "out_file")]) == 2
    assert main([str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2


def test_report_messages(tmp_path, capsys):
    from synpo.report import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps({"name": "x", "iterations": []}))
    main([str(run_dir)])
    assert "holds no iterations" in capsys.readouterr().err
    (tmp_path / "f").write_text("")
    main([str(run_dir), "--out", str(tmp_path / "f")])
    assert "a file is there" in capsys.readouterr().err


# --- through the command line: exit 2, no traceback ----------------------------------------------------------------


def test_cli_bad_model_directory(tmp_path):
    d = _model_copy(tmp_path)
    (d / "config.json").write_text("")
    fails_cleanly(run_cli(tmp_path / "r", f"model.name_or_path={d}"), "config.json:1 is not valid JSON")


def test_cli_latin1_seed_file(tmp_path):
    seed = tmp_path / "seed.jsonl"
    seed.write_bytes(b'{"prompt": "caf\xe9", "answer": "x"}\n')
    fails_cleanly(run_cli(tmp_path / "r", "data=jsonl", f"data.path={seed}"), f"{seed}:1: not valid UTF-8")


def test_cli_run_dir_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    cmd = [sys.executable, "run.py", *MICRO, f"run_dir={f}", f"hydra.run.dir={tmp_path}/hydra"]
    fails_cleanly(
        subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300), "is a file, not a directory"
    )


def test_cli_sweep_with_a_bad_point_fails_before_launching_anything(tmp_path):
    """The driver validates every point: the bad one is named within seconds and no point runs."""
    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, "run.py", "-m", "trainer.beta=2,-1", "logger=none", f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out, out[-2000:]
    assert "sweep point [trainer.beta=-1 logger=none]" in out and "trainer.beta=-1.0 must be > 0" in out
    assert "nothing was launched" in out and not sweep_dir.exists()


# --- empty filters: the run stops at the filter with the counts (slow: they run up to it) -------------------------


@pytest.mark.slow
def test_a_threshold_that_keeps_no_improver_example(tmp_path):
    fails_cleanly(
        run_cli(tmp_path / "r", "scorer.threshold=1.0"),
        "the improver has no training example",
        "scorer.threshold=1.0",
    )


@pytest.mark.slow
def test_a_threshold_that_keeps_no_pair(tmp_path):
    fails_cleanly(
        run_cli(tmp_path / "r", "scorer.threshold=1.0", "method.improver_filter=false"),
        "D is empty",
        "Lower scorer.threshold",
    )


@pytest.mark.slow
def test_a_generator_that_writes_no_valid_prompt(tmp_path):
    """The generator's output parses to nothing (one new token is no question): the run stops at the prompt filter
    with the counts and what to change, not with a traceback from deeper in the iteration."""
    fails_cleanly(
        run_cli(tmp_path / "r", "generator.max_new_tokens=1", "eval.max_new_tokens=8"),
        "gave no valid prompt out of 48",
        "'n_invalid': 48",
    )


def test_a_seed_set_too_small_for_the_generator(tmp_path):
    seed = tmp_path / "seed.jsonl"
    seed.write_text(GOOD_ROW + "\n" + json.dumps({"prompt": "Uppercase the word rose.", "answer": "ROSE."}) + "\n")
    fails_cleanly(
        run_cli(tmp_path / "r", "data=jsonl", f"data.path={seed}", "data.n_val=1"),
        "The prompt generator has no training example",
    )


def test_settings_that_mean_gpus_stop_on_a_machine_without_one(tmp_path):
    """No silent CPU: a run whose settings mean GPUs stops before any work where torch sees no CUDA device."""
    import torch
    from conftest import compose
    from helpers import run_cli, write_paper_config

    from synpo.config import gpu_reasons

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    run_dir = tmp_path / "run"
    proc = run_cli(run_dir, "launch.launcher=accelerate")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out, out[-2000:]
    assert "mean GPUs (launch.launcher=accelerate" in out and "launch.allow_cpu=true" in out
    assert not (run_dir / ".stages").exists()  # stopped before any work

    mistral = write_paper_config(tmp_path / "mistral", "mistral_7b")
    reasons = gpu_reasons(compose([f"model.name_or_path={mistral}", "model.dtype=bfloat16"]))
    assert len(reasons) == 1 and "(7.1B parameters)" in reasons[0], reasons
    assert gpu_reasons(compose(["model.dtype=bfloat16"])) == []  # the tiny world's 1M parameters in bf16: a CPU job
    assert gpu_reasons(compose(["generator=vllm", "generator.tensor_parallel_size=2"])) == [
        "generator.tensor_parallel_size=2"
    ]
    assert gpu_reasons(compose(["scorer.replicas=8"])) == ["scorer.replicas=8"]


def test_float16_is_refused_with_a_sentence(composed):
    from synpo.config import collect_problems

    problems = collect_problems(composed(["model.dtype=float16"]), read_files=False)
    assert any(p.startswith("model.dtype=float16 is not supported") and "bfloat16" in p for p in problems)


def test_several_machines_outside_a_slurm_allocation_stop_before_any_work(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    proc = run_cli(run_dir, "launch.launcher=accelerate", "launch.num_machines=2", "launch.allow_cpu=true")
    fails_cleanly(proc, "needs a SLURM allocation")
    assert not (run_dir / ".stages").exists()


def test_srun_passes_the_allocations_cpus_on_to_the_step(tmp_path, monkeypatch):
    """Slurm 22.05+ does not hand sbatch's --cpus-per-task to srun: without it every rank shares one CPU."""
    from synpo.training.launch import srun_command

    scontrol = tmp_path / "scontrol"  # a stand-in for SLURM's client: prints the allocation's one host
    scontrol.write_text("#!/bin/sh\necho node-a\n")
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node-a")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "1")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "64")
    cmd = srun_command(["accelerate", "launch"], ["-m", "synpo.training.job", "job.json"], 1)
    assert cmd[:4] == ["srun", "--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=64"]
    assert "--main_process_ip node-a" in cmd[-1]
