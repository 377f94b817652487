import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("WANDB_SILENT", "true")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def compose(overrides: list[str] | None = None):
    """The config that `python run.py <overrides>` would see (without Hydra's runtime-only keys)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import synpo.config  # noqa: F401  (registers the schemas)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []) + ["run_dir=/tmp/unused"])


@pytest.fixture
def composed():
    return compose


# --- a micro run with every tiny-world evaluation group (shared by test_evaluation and test_report) ---------------

EVAL_GROUPS = "eval=[validation,winrate,diversity,tinyharness,export]"


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory):
    import signal
    import subprocess
    import time

    from helpers import cli_command, cli_env, run_cli

    """A micro run with every tiny-world evaluation group, killed once the evaluation answers of iteration 1 exist,
    then rerun to the end. Returns the run directory and what the kill left of those answers."""
    run_dir = tmp_path_factory.mktemp("evals") / "run"
    extra = [EVAL_GROUPS, "trainer.beta_grid=[2]", "eval.winrate.n_boot=100"]
    proc = subprocess.Popen(cli_command(run_dir, *extra), cwd=ROOT, env=cli_env(), start_new_session=True)
    marker = run_dir / ".stages" / "iter_1__evals__answers.json"
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "the evaluation answers stage never finished"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    answers = run_dir / "iter_1/evals/answers.jsonl"
    before = (answers.read_bytes(), answers.stat().st_mtime_ns)
    done = run_cli(run_dir, *extra)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run_dir, before, done.stdout + done.stderr
