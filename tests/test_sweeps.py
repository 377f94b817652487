"""A micro beta sweep through Hydra's submitit launcher (the SLURM code path, run locally): one run per beta."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT
from helpers import MICRO


@pytest.mark.slow
def test_micro_beta_sweep_with_submitit_local(tmp_path):
    sweep_dir = tmp_path / "sweep"
    micro = [o for o in MICRO if not o.startswith("trainer.beta_grid")]
    cmd = [
        sys.executable,
        "run.py",
        "-m",
        "hydra/launcher=local",
        "trainer.beta=2,10",
        *micro,
        f"hydra.sweep.dir={sweep_dir}",
    ]
    proc = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=1500
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = sorted(sweep_dir.glob("*/results.json"))
    assert len(results) == 2 and all("trainer.beta=" in p.parent.name for p in results)
    betas = sorted(json.loads(p.read_text())["iterations"][1]["beta"] for p in results)
    assert betas == [2.0, 10.0]
    assert list(sweep_dir.glob(".submitit/*")), "the jobs went through submitit"


@pytest.mark.slow
def test_a_point_that_fails_at_run_time_reports_its_error_in_the_driver(tmp_path):
    """A UserError found only at run time (here: a threshold that no candidate pair passes, known once iteration 1
    has scored its pairs) reaches the sweep driver's own output as its text, not only a log path, and the
    driver exits instead of waiting."""
    sweep_dir = tmp_path / "sweep"
    micro = [o for o in MICRO if not o.startswith("trainer.beta_grid")]
    cmd = [sys.executable, "run.py", "-m", "hydra/launcher=local", "scorer.threshold=0.99", "trainer.beta=2", *micro]
    proc = subprocess.run(
        [*cmd, f"hydra.sweep.dir={sweep_dir}"],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "JobUserError: iteration 1: D is empty" in out, out[-3000:]
    assert "Lower scorer.threshold" in out
