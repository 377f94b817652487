"""``method=external``: a policy trained elsewhere evaluated as pi_1 without training (the "Manual" row from
SimPO's released checkpoints). Given pi_0 itself, it must print pi_0's own validation numbers."""

import json
import os
import shutil

from helpers import run_cli

from synpo.modeling import resolve_model_path


def test_an_external_policy_is_evaluated_as_pi_1_without_training(tmp_path):
    model = tmp_path / "released"
    shutil.copytree(resolve_model_path("builtin:tiny-sft"), model)  # a "released checkpoint": here pi_0's files
    run_dir = tmp_path / "run"
    proc = run_cli(run_dir, "method=external", f"method.policy_path={model}", "data.n_val=16", "logger=none")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((run_dir / "results.json").read_text())["iterations"]
    assert [r["iteration"] for r in rows] == [0, 1]
    for key in ("val_score", "val_exact", "val_score_sampled"):
        assert rows[1][key] == rows[0][key], key  # the same model on the same split: the same answers
    assert os.path.realpath(run_dir / "iter_1" / "policy") == str(model)
    assert not list(run_dir.glob("iter_1/*/model")) and "train" not in rows[1]["seconds"]  # nothing trained


def test_a_missing_external_policy_is_refused_before_any_work(tmp_path):
    proc = run_cli(tmp_path / "run", "method=external", f"method.policy_path={tmp_path}/nowhere", "logger=none")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out
    assert "method.policy_path:" in out and "not a model directory" in out
