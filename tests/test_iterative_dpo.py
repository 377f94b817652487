"""Iterative DPO (``method=iterative_dpo``), the worked example of adding a method: one module, one YAML, one
experiment and this test. A micro run of two iterations: on-policy best-over-worst pairs, DPO from pi_{t-1}
against itself on that iteration's pairs alone, the best beta on validation."""

import json
import os
from pathlib import Path

import pytest
from helpers import run_cli

pytestmark = pytest.mark.slow  # a whole run (about 2 minutes on 2 cores)


def test_iterative_dpo_trains_each_policy_from_the_last_on_its_own_pairs(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        run_dir, "experiment=tiny_iterative_dpo", "method.iterations=2", "trainer.beta_grid=[0.1,0.5]", "logger=none"
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((run_dir / "results.json").read_text())["iterations"]
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    policy_1 = os.path.realpath(run_dir / "iter_1" / "policy")
    for t, row in ((1, rows[1]), (2, rows[2])):
        pairs = (run_dir / f"iter_{t}" / "pairs.jsonl").read_text().splitlines()
        assert row["d_size"] == row["n_pairs_added"] == len(pairs) > 0  # this iteration's pairs alone
        starts = {Path(c["from"]).resolve() for c in row["per_beta"].values()}
        assert len(starts) == 1 and set(row["per_beta"]) == {"beta_0.1", "beta_0.5"}
        if t == 2:
            assert starts == {Path(policy_1)}  # DPO from pi_1 (its reference too), not from pi_0
        else:
            assert "iter_" not in str(starts.pop())  # iteration 1 starts from pi_0
    assert json.loads((run_dir / "results.json").read_text())["prompt_source"] == "seed"
