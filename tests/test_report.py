"""`python -m synpo.report`: tables rebuilt from a finished micro run (and from its offline W&B run), the paper's rows
beside them, official judgments taking precedence, and readable errors."""

import json
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

from synpo.evaluation.winrate import alpaca_preference
from synpo.report import build
from synpo.sources import load_source
from synpo.tracking import offline_run_files


def test_report_rebuilds_the_tables_of_a_finished_run(eval_run, tmp_path):
    run_dir = eval_run[0]
    rows = json.loads((run_dir / "results.json").read_text())["iterations"]
    md = build([str(run_dir)], tmp_path).read_text()
    name = json.loads((run_dir / "results.json").read_text())["name"]
    wr1 = rows[1]["wr_win_rate"]
    assert f"| {name}* | 1 | " in md and f"{wr1:.1f} [" in md  # our win rate with its 95% interval
    assert "| paper: Mistral-Base SFT | 0 |" in md and "| paper: Llama3-Base SynPO | 4 |" in md
    assert "Table 4: Open LLM leaderboard" in md and "Table 5" in md
    mc0 = rows[0]["lm_tinyworld_tinyworld_mc"] * 100
    assert f"| {name} | 0 | " in md and f"{mc0:.1f}" in md  # the tiny-world lm-eval suite
    assert f"{rows[1]['div_mean_cosine']:.3f}" in md  # diversity of iteration 1's synthetic prompts
    tex = (tmp_path / "report.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\toprule" in tex and "[" in tex
    for png in ("win_rates.png", "lm_eval.png", "figure5_similarity.png", "diversity.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG", png


def test_the_offline_wandb_run_gives_the_same_numbers(eval_run):
    run_dir = eval_run[0]
    from_dir = load_source(str(run_dir)).rows
    from_wandb = load_source(str(offline_run_files(run_dir)[-1])).rows
    for a, b in zip(from_dir, from_wandb, strict=True):
        for k in ("wr_win_rate", "wr_length_controlled_winrate", "lm_tinyworld_average", "div_mean_cosine"):
            assert a[k] == b[k], k


def test_official_judgments_take_precedence(eval_run, tmp_path):
    run_dir, copy = eval_run[0], tmp_path / "run"
    copy.mkdir()
    shutil.copy(run_dir / "results.json", copy / "results.json")
    name = json.loads((copy / "results.json").read_text())["name"]
    outputs = json.loads((run_dir / "iter_1/export/alpaca_eval/model_outputs.json").read_text())
    prefs = [1.0, 0.0, 0.5, 1.0] * (len(outputs) // 4)  # what a GPT-4 judge might have said
    annotations = [
        {
            "instruction": o["instruction"],
            "output_1": "ref",
            "generator_1": "gpt4_turbo",
            "output_2": o["output"],
            "generator_2": o["generator"],
            "preference": alpaca_preference(p),
        }
        for o, p in zip(outputs, prefs, strict=False)
    ]
    target = copy / "iter_1/export/alpaca_eval/annotations.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(annotations))
    judgments = copy / "iter_1/export/mt_bench/model_judgment/gpt-4_single.jsonl"
    judgments.parent.mkdir(parents=True)
    judgments.write_text(json.dumps({"question_id": 1, "model": f"{name}-iter1", "score": 7, "turn": 1}) + "\n")
    md = build([str(copy)], tmp_path / "out", paper_file=None).read_text()
    row = next(line for line in md.splitlines() if line.startswith(f"| {name} | 1 |"))  # no "*": official
    assert f"{100 * sum(prefs) / len(prefs):.1f} [" in row and row.endswith("| 7.0 |")
    assert "paper:" not in md


def test_a_bad_source_is_one_readable_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "synpo.report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "not a finished run directory" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "results,field",
    [
        ([1, 2], "the file holds a list"),
        ({"iterations": [{"iteration": 0, "val_score": 0.5}]}, "name is missing"),
        ({"name": "r", "seed": "0", "iterations": [{"iteration": 0}]}, "seed is a string"),
        ({"name": "r", "iterations": {"0": {}}}, "iterations is an object, not list"),
        ({"name": "r", "iterations": [{"val_score": 0.5}]}, "iterations[0].iteration is None"),
        ({"name": "r", "iterations": [{"iteration": 0}, "x"]}, "iterations[1] is a string"),
        ({"name": "r", "iterations": [{"iteration": 1, "val_score": "0.5"}]}, "iterations[0].val_score is a string"),
        ({"name": "r", "iterations": [{"iteration": 0, "beta": [2, 4]}]}, "iterations[0].beta is a list"),
    ],
)
def test_a_results_file_of_the_wrong_shape_names_the_file_and_the_field(tmp_path, results, field):
    """The report reads results.json through the schema ``write_results`` writes by: any field of the wrong shape
    is one paragraph with the file and the field, never a traceback from inside the tables."""
    from synpo.errors import UserError
    from synpo.sources import load_source

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(results))
    with pytest.raises(UserError) as e:
        load_source(str(run))
    assert str(run / "results.json") in str(e.value) and field in str(e.value), str(e.value)


def test_a_results_file_as_the_loop_writes_it_fits_the_schema(eval_run):
    from synpo.results import results_problems

    run_dir = eval_run[0]
    assert results_problems(json.loads((run_dir / "results.json").read_text())) == []


def test_runs_of_one_label_but_different_settings_are_not_averaged():
    """Table 6's one-iteration SynPO runs share Table 2's label: they form their own group, each label names the
    keys that differ, and runs that differ only in their seed still average."""
    from synpo.sources import LoadedRun
    from synpo.tables import group_runs

    def run(seed, iterations):
        settings = {"method.iterations": iterations, "trainer.beta_grid": [2.0, 10.0]}
        return LoadedRun("tiny_synpo", f"r{seed}{iterations}", [{"iteration": 0}], seed=seed, settings=settings)

    groups = group_runs([run(0, 4), run(1, 4), run(0, 1), run(1, 1), run(2, 1)])
    assert sorted((g.label, len(g.runs)) for g in groups) == [
        ("tiny_synpo [method.iterations=1]", 3),
        ("tiny_synpo [method.iterations=4]", 2),
    ]
    assert [g.label for g in group_runs([run(0, 4), run(1, 4)])] == ["tiny_synpo"]


def test_a_speed_setting_is_not_a_setting_of_the_report(tmp_path):
    """Two seeds of one run, one on a vLLM engine over 8 GPUs and one over 4 with a smaller memory share, are one
    setting: each registry group's speed fields come from the schema of the option the saved config names."""
    from conftest import compose
    from omegaconf import OmegaConf

    from synpo.sources import run_settings

    def saved(*overrides):
        cfg = compose(["experiment=mistral_synpo", "generator.python=/usr/bin/python3", *overrides])
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(OmegaConf.to_yaml(cfg))
        return run_settings(path)

    a = saved()
    b = saved("generator.tensor_parallel_size=4", "generator.gpu_memory_utilization=0.5", "scorer.batch_size=2")
    assert a == b and "generator.temperature" in a and "generator.tensor_parallel_size" not in a
    assert saved("scorer.threshold=0.3") != a


def test_a_corrupt_saved_config_is_one_readable_error(tmp_path):
    import pytest

    from synpo.errors import UserError
    from synpo.sources import run_settings

    bad = tmp_path / "config.yaml"
    bad.write_text("method: [unclosed\n")
    with pytest.raises(UserError, match=r"config.yaml cannot be read .* Rerun the job"):
        run_settings(bad)


def test_the_t_quantile_holds_past_ten_seeds():
    """A 95% interval over n seeds uses Student's t with n - 1 degrees of freedom at any n (a table stopped at 10
    and fell back to the normal 1.96 for 12 seeds, where t is 2.201)."""
    from synpo.tables import t_975

    assert t_975(1) == pytest.approx(12.706, abs=1e-3) and t_975(2) == pytest.approx(4.303, abs=1e-3)
    assert t_975(11) == pytest.approx(2.201, abs=1e-3)
