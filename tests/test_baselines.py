"""The paper's baselines and ablations on the tiny world, through `python run.py`: each one's micro run (killed once
and resumed), its own counts in results.json and W&B, the self-judge's parser under hostile input, and every table of
the report built from these runs with the published cells beside ours."""

import json
import os
import random
import signal
import string
import subprocess
import time

import pytest
from conftest import ROOT
from helpers import cli_command, cli_env, run_cli

from synpo.prompts import parse_instruction, parse_judge_score
from synpo.tracking import offline_run_files, read_offline_history

FAST = ["trainer.beta_grid=[2]", "data.n_val=16"]
DRAWN = ["method.n_prompts=32"]  # for the methods that draw prompts (the others have no such field)

# name -> (overrides, a stage marker to kill the first attempt at, the counts its results row must carry)
CASES = {
    "sampling_ranking": (
        ["experiment=tiny_sampling_ranking", *DRAWN],
        "iter_1__samples.json",
        ("samples_per_prompt", "n_tied", "score_best", "score_worst", "n_pairs_kept", "family_add"),
    ),
    "self_rewarding": (
        [
            "experiment=tiny_self_rewarding",
            "data.n_train=1200",
            *DRAWN,
        ],  # EFT needs the full seed set to learn the format
        "judge_sft.json",
        ("samples_per_prompt", "judge_unparsed", "judge_unparsed_rate", "judge_agreement", "n_pairs_kept"),
    ),
    "offline": (
        ["experiment=tiny_offline", "method.n_preferences=96"],
        "iter_0__eval.json",
        ("n_candidates", "n_validation_overlap", "scorer_agreement", "n_pairs_added"),
    ),
    "seed_sft": (["method=seed_sft"], "iter_0__eval.json", ("d_size", "val_score")),
    "seed_po": (["method=seed_po"], "iter_1__seed_policy.json", ("n_pairs_kept", "mean_gap", "d_size")),
    "seed_sft_po": (["method=seed_sft_po"], "iter_1__seed_sft.json", ("n_pairs_kept", "d_size")),
    "self_instruct": (
        ["method.prompt_source=self_instruct", *DRAWN],
        "iter_1__generate_prompts.json",
        ("n_generated", "n_invalid", "n_duplicate", "n_prompts"),
    ),
    "manual_prompts": (
        ["method.prompt_source=manual", "method.manual_prompts=tinyworld", *DRAWN],
        "iter_1__prompts.json",
        ("n_prompts", "n_invalid", "family_add"),
    ),
}


def _killed_then_resumed(run_dir, extra: list[str], marker: str):
    """Start the run, SIGKILL its process group once ``marker`` is written, then rerun the same command to the end.
    Returns the marker's record before the resume and the resumed run's log."""
    proc = subprocess.Popen(
        cli_command(run_dir, *extra),
        cwd=ROOT,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    path = run_dir / ".stages" / marker
    deadline = time.time() + 600
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert path.exists() and not (run_dir / "results.json").exists(), "the kill came too late to test a resume"
    before = json.loads(path.read_text())
    done = run_cli(run_dir, *extra)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return before, done.stdout + done.stderr


@pytest.fixture(scope="module")
def case_runs(tmp_path_factory):
    return {}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_micro_run_resumes_after_a_kill_and_logs_its_counts(name, tmp_path_factory, case_runs):
    overrides, marker, counts = CASES[name]
    run_dir = tmp_path_factory.mktemp(name) / "run"
    before, log = _killed_then_resumed(run_dir, [*overrides, *FAST], marker)
    assert "done earlier" in log
    assert json.loads((run_dir / ".stages" / marker).read_text())["finished"] == before["finished"]  # not redone
    results = json.loads((run_dir / "results.json").read_text())
    rows = results["iterations"]
    assert [r["iteration"] for r in rows] == [0, 1]
    for key in counts:
        assert rows[1].get(key) is not None, f"{name}: {key} missing from the results row"
    assert (run_dir / "iter_1" / "policy" / "config.json").exists()
    history = [h for f in offline_run_files(run_dir) for h in read_offline_history(f) if "val_score" in h]
    assert all(key in history[-1] for key in counts[:2])  # the counts reach W&B too
    case_runs[name] = run_dir


@pytest.mark.slow
def test_the_counts_mean_what_they_say(case_runs):
    """Cross-checks between the files a run leaves and its counts."""
    if len(case_runs) < len(CASES):
        pytest.skip("needs every micro run of this module")
    if "sampling_ranking" in case_runs:
        d = case_runs["sampling_ranking"]
        samples = [json.loads(x) for x in (d / "iter_1/samples.jsonl").read_text().splitlines()]
        prompts = (d / "iter_1/prompts.jsonl").read_text().splitlines()
        assert len(samples) == 5 * len(prompts) and {s["sample"] for s in samples} == set(range(5))
        scores = [json.loads(x) for x in (d / "iter_1/scores.jsonl").read_text().splitlines()]
        for s in scores:  # the best of the group is chosen, the worst rejected
            assert s["gap"] == pytest.approx(s["score_chosen"] - s["score_rejected"], abs=1e-5)
            assert s["score_chosen"] == pytest.approx(max(s["rank_scores"]), abs=1e-5)
    if "offline" in case_runs:
        row = json.loads((case_runs["offline"] / "results.json").read_text())["iterations"][1]
        assert row["d_size"] == row["n_pairs_added"] == row["n_candidates"] > 0  # every given pair, none filtered
    if "self_rewarding" in case_runs:
        d = case_runs["self_rewarding"]
        judged = [json.loads(x) for x in (d / "iter_1/judgements.jsonl").read_text().splitlines()]
        row = json.loads((d / "results.json").read_text())["iterations"][1]
        assert row["judge_unparsed"] == sum(parse_judge_score(j["response"]) is None for j in judged)


# --- the self-judge's parser ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is relevant and correct.\nScore: 4", 4.0),
        ("Score: 5/5", 5.0),
        ('Conclude with "Score: <total points>". My verdict... Score: 3', 3.0),  # the last "Score:" counts
        ("Score: 3. On reflection, Score: 9", None),  # ... even when it is out of range
        ("score = 2.5", 2.5),
        ("**Score:** 1", 1.0),  # Markdown around the label
        ("Score: **4**", 4.0),
        ("Score: 10", None),  # out of range, not 1
        ("Score: 6", None),
        ("Score: -1", None),
        ("Score: 4.", 4.0),
        ("I give it four points.", None),
        ("", None),
        ("Score: __import__('os').system('rm -rf /')", None),
        ("Score: 1e3", None),
    ],
)
def test_judge_scores_are_read_not_evaluated(text, expected):
    assert parse_judge_score(text) == expected


def test_the_judge_parser_survives_fuzzing():
    rng = random.Random(0)
    alphabet = string.printable + "\u00e9\u4e2d\U0001f600\x00"
    for _ in range(3000):
        n = rng.randint(0, 300)
        text = "".join(rng.choice(alphabet) for _ in range(n))
        if rng.random() < 0.3:
            text += f"Score: {rng.choice(['0', '5', '2.5', '7', '-3', '3' * 50, '', 'x'])}"
        value = parse_judge_score(text)
        assert value is None or 0.0 <= value <= 5.0
    assert parse_judge_score("Score: 3 " * 200_000 + "Score: 4") == 4.0  # long text: only its tail is read
    assert parse_judge_score("Score: 3 " * 200_000 + "Score: 9") is None
    assert parse_judge_score(None) is None and parse_judge_score(b"Score: 3") is None


def test_self_instruct_answers_are_parsed_boundedly():
    assert parse_instruction("<question>Add the numbers 3 and 4.</question> blah") == "Add the numbers 3 and 4."
    assert parse_instruction("Task 5: Uppercase the word tiger.\nTask 6: ...") == "Uppercase the word tiger."
    assert parse_instruction("\n\n  Sort the numbers: 3 1 2  ") == "Sort the numbers: 3 1 2"
    assert parse_instruction("<script>alert(1)</script>") is None
    assert parse_instruction("x" * 10_000) is None and parse_instruction("") is None


# --- the report -------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_table_is_built_from_the_micro_runs_with_the_published_rows(case_runs, tmp_path):
    from synpo.report import build

    if len(case_runs) < len(CASES):
        pytest.skip("needs every micro run of this module")
    md = build([str(d) for d in case_runs.values()], tmp_path).read_text()
    for title in ("Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Table 7", "Figure 5"):
        assert f"### {title}" in md, title
    assert "| paper: Mistral-Base SynPO | 4 |  |  |  |  | 34.0 | 36.4 | 22.8 | n/p |" in md
    assert "| paper: Mistral-Base Sampling-Ranking | 1 |  |  |  |  | 6.5 | n/p | n/p | n/p |" in md
    assert "| paper: Seed SFT + PO |  |  |  |  |  | 24.6 | 20.9 |" in md
    lines = md.splitlines()
    ours = {line.split(" | ")[0][2:] for line in lines if line.startswith("| ") and "paper:" not in line}
    for label in ("tiny_sampling_ranking", "tiny_self_rewarding", "tiny_offline"):
        assert label in ours, label  # Table 2's rows
    assert any("[self_instruct prompts]" in x for x in ours) and any("[manual prompts]" in x for x in ours)
    assert any("(seed_sft)" in x or x.startswith("seed_sft") for x in ours)
    row = json.loads((case_runs["sampling_ranking"] / "results.json").read_text())["iterations"][1]
    sr = next(line for line in lines if line.startswith("| tiny_sampling_ranking | 1 | 1 |"))
    assert f"| {row['val_score']:.3f} |" in sr  # our number, as the run wrote it
    tex = (tmp_path / "report.tex").read_text()
    assert "Table 7" in tex and "n/p" in tex
