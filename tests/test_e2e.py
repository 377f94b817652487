"""End to end through `python run.py`: a micro SynPO run, its artifacts, results and W&B history; resume after a
kill; the bad-input errors a user sees. Real TRL, transformers and W&B (offline) on the shipped tiny model."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import MICRO, SECRET, cli_command, cli_env, fails_cleanly, run_cli
from omegaconf import OmegaConf

from synpo.tracking import offline_run_files, read_offline_history


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("micro") / "run"
    proc = run_cli(run_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir, proc


def test_every_artifact_exists(micro_run):
    run_dir, _ = micro_run
    expected = [
        "config.yaml",
        "seed/train.jsonl",
        "seed/val.jsonl",
        "keywords.jsonl",
        "generator/model/config.json",
        "iter_0/val_answers.jsonl",
        "iter_0/metrics.json",
        "iter_1/prompts.jsonl",
        "iter_1/seed_policy.jsonl",
        "iter_1/improver/model/config.json",
        "iter_1/policy.jsonl",
        "iter_1/refined.jsonl",
        "iter_1/initial.jsonl",
        "iter_1/scores.jsonl",
        "iter_1/pairs.jsonl",
        "iter_1/beta_2/metrics.json",
        "iter_1/beta_10/metrics.json",
        "iter_1/policy/config.json",
        "iter_1/metrics.json",
        "results.json",
        "results.md",
        "plots/val_score.png",
        "plots/candidates.png",
        "plots/pairs.png",
        "plots/content_form.png",
    ]
    missing = [p for p in expected if not (run_dir / p).is_file()]
    assert not missing
    # the selected candidate's model is kept (pi_1); the other's is deleted, with a marker (launch.keep_candidates)
    selected = (run_dir / "iter_1/policy").resolve()
    for beta in ("beta_2", "beta_10"):
        model = run_dir / "iter_1" / beta / "model"
        kept = model.resolve() == selected
        assert (model / "config.json").is_file() == kept and (
            run_dir / "iter_1" / beta / "model.pruned"
        ).is_file() != kept
    assert (run_dir / "plots/val_score.png").read_bytes()[:4] == b"\x89PNG"
    pairs = [json.loads(x) for x in (run_dir / "iter_1/pairs.jsonl").read_text().splitlines()]
    scores = [json.loads(x) for x in (run_dir / "iter_1/scores.jsonl").read_text().splitlines()]
    assert all(p["score_chosen"] - p["score_rejected"] > 0.1 for p in pairs)  # scorer.threshold of the verifier
    assert {p["prompt"] for p in pairs} <= {s["prompt"] for s in scores if s["kept"]}


def test_results_have_the_issue_fields(micro_run):
    run_dir, proc = micro_run
    results = json.loads((run_dir / "results.json").read_text())
    rows = results["iterations"]
    assert [r["iteration"] for r in rows] == [0, 1]
    for key in ("val_score", "val_win_rate", "seconds"):
        assert all(key in r for r in rows), key
    for key in ("n_prompts", "n_pairs_kept", "keep_ratio", "beta"):
        assert key in rows[1], key
    assert rows[0]["val_win_rate"] == 0.5  # pi_0 against itself: all ties
    # the verifier's two parts of the score, for content against form: the score is 0.7 content + 0.3 form, halved
    # where the content is not exactly right, so the mean score lies between half that sum and the sum
    for r in [*rows, *rows[1]["per_beta"].values()]:
        whole = 0.7 * r["val_content"] + 0.3 * r["val_form"]
        assert 0.5 * whole - 1e-6 <= r["val_score"] <= whole + 1e-6, r
    assert rows[1]["beta"] in (2.0, 10.0)
    assert set(rows[1]["per_beta"]) == {"beta_2", "beta_10"}
    best = max(rows[1]["per_beta"].values(), key=lambda m: m["val_score"])
    assert rows[1]["val_score"] == best["val_score"]
    assert {"prompts", "improver", "policy", "refined", "initial", "pairs", "simpo", "eval"} <= set(rows[1]["seconds"])
    assert "| iteration |" in proc.stderr + proc.stdout  # the table is printed
    import torch
    import transformers

    saved = OmegaConf.load(run_dir / "config.yaml").generator
    want = {k: saved[k] for k in ("backend", "temperature", "top_p", "max_new_tokens")}
    want["version"] = f"transformers {transformers.__version__}, torch {torch.__version__}"
    assert results["generation"] == want and want["backend"] == "hf"
    assert _offline_config(offline_run_files(run_dir)[0])["generation"] == want  # W&B's config has it too


def _offline_config(path: Path) -> dict:
    """The config updates recorded in an offline W&B run file (the keys added after wandb.init)."""
    from wandb.proto import wandb_internal_pb2

    from synpo.tracking import iter_offline_records

    out = {}
    for raw in iter_offline_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "config":
            out |= {
                item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.config.update
            }
    return out


def test_results_have_compute_by_stage_kind(micro_run):
    """What the floor benchmark reads: compute for every stage kind that ran a model, none for scoring."""
    from synpo.compute import sequence_compute

    run_dir, _ = micro_run
    rows = json.loads((run_dir / "results.json").read_text())["iterations"]
    assert {"generator", "eval"} <= set(rows[0]["compute"])
    ran_a_model = {"prompts", "improver", "policy", "refined", "initial", "simpo", "eval", "seed_policy"}
    assert ran_a_model <= set(rows[1]["compute"])
    assert not {"scores", "pairs"} & set(rows[1]["compute"])
    marker = json.loads((run_dir / ".stages/iter_1__policy.json").read_text())
    assert marker["compute"] == rows[1]["compute"]["policy"] and "compute" not in marker["info"]
    answers = (run_dir / "iter_1/policy.jsonl").read_text().splitlines()
    assert marker["compute"]["tokens"] > len(answers) * 5  # a rendered prompt alone is several tokens
    assert marker["compute"] != sequence_compute([0])


def test_wandb_offline_history_has_one_step_per_iteration(micro_run):
    run_dir, _ = micro_run
    files = offline_run_files(run_dir)
    assert len(files) == 1
    history = read_offline_history(files[0])
    metric_rows = [h for h in history if "val_score" in h]
    assert [h["_step"] for h in metric_rows] == [0, 1]
    assert "per_beta/beta_2/val_score" in metric_rows[1] and "n_pairs_kept" in metric_rows[1]
    assert any(key.startswith("sample_pairs") for h in history for key in h)


def test_api_key_never_reaches_disk(micro_run):
    run_dir, proc = micro_run
    assert SECRET not in proc.stdout + proc.stderr
    assert "W&B run" in proc.stdout + proc.stderr  # the tracker ran, with the key in its environment
    for path in run_dir.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert SECRET.encode() not in path.read_bytes(), path


def test_resume_after_kill_does_not_retrain_generator(micro_run, tmp_path):
    reference_dir, _ = micro_run
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        cli_command(run_dir),
        cwd=ROOT,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    marker = run_dir / ".stages" / "generator.json"
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists() and not (run_dir / "results.json").exists()
    first = json.loads(marker.read_text())
    resumed = run_cli(run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert "stage generator" in log and "done earlier" in log
    assert json.loads(marker.read_text())["finished"] == first["finished"]  # the generator was not retrained

    def strip(rows):  # the wall seconds and model arithmetic of this attempt: a skipped stage adds neither
        return [{k: v for k, v in r.items() if k not in ("seconds", "compute")} for r in rows]

    got = json.loads((run_dir / "results.json").read_text())["iterations"]
    want = json.loads((reference_dir / "results.json").read_text())["iterations"]
    assert strip(got) == strip(want)

    # One W&B run: the killed attempt and the resumed one log to the same run id (one offline directory each, as
    # wandb writes them), and every iteration is exactly one history step across them.
    files = offline_run_files(run_dir)
    assert len(files) == 2 and len({f.name for f in files}) == 1, files
    steps = [h["_step"] for f in files for h in read_offline_history(f) if "val_score" in h]
    assert sorted(steps) == [0, 1]

    # A changed threshold redoes what it filters (improver examples, pairs) and everything downstream, nothing else.
    stages = run_dir / ".stages"
    before = {p.name: json.loads(p.read_text())["finished"] for p in stages.iterdir()}
    changed = run_cli(run_dir, "scorer.threshold=0.35")  # over 0.3: drops the right-but-terse drafts (0.7 vs 1.0)
    assert changed.returncode == 0, changed.stderr[-3000:]
    after = {p.name: json.loads(p.read_text())["finished"] for p in stages.iterdir()}
    redone = {name for name in after if after[name] != before.get(name)}
    assert {
        "iter_1__improver.json",
        "iter_1__refined.json",
        "iter_1__pairs.json",
        "iter_1__beta_2__train.json",
        "iter_1__beta_10__eval.json",
    } <= redone
    assert not redone & {
        "generator.json",
        "seed.json",
        "iter_1__prompts.json",
        "iter_1__seed_policy.json",
        "iter_1__policy.json",
        "iter_1__initial.json",
        "iter_0__eval.json",
    }


def test_bad_config_value_fails_cleanly(tmp_path):
    fails_cleanly(run_cli(tmp_path / "r", "trainer.beta=-2", "trainer.beta_grid=[]"), "trainer.beta=-2.0 must be > 0")


def test_bad_seed_file_fails_cleanly(tmp_path):
    bad = tmp_path / "seed.jsonl"
    bad.write_text('{"prompt": "Add the numbers 1 and 2.", "answer": "3"}\n{"prompt": oops}\n')
    fails_cleanly(run_cli(tmp_path / "r", "data=jsonl", f"data.path={bad}"), f"{bad}:2: not valid JSON")
    fails_cleanly(run_cli(tmp_path / "r2", "data=jsonl", f"data.path={tmp_path}/none.jsonl"), "file not found")


def test_missing_model_fails_cleanly(tmp_path):
    fails_cleanly(run_cli(tmp_path / "r", f"model.name_or_path={tmp_path}/no_model"), "model.name_or_path")


def test_incompatible_run_dir_fails_cleanly(micro_run):
    run_dir, _ = micro_run
    fails_cleanly(run_cli(run_dir, "seed=7"), "incompatible config", "seed: the directory has 0")


# A value other than the micro run's for each speed-only field, by the field's dotted key where its type alone does
# not give a valid one. Every field declared speed=True must be covered: a new one without a value fails the test.
OTHER_VALUES = {
    "generator.python": sys.executable,
    "generator.max_model_len": "4096",
    "generator.devices": "[0,1]",
    "scorer.endpoint": "http://127.0.0.1:9/v1",
    "scorer.api_key_env": "SYNPO_TEST_KEY",
    "launch.launcher": "accelerate",
    "launch.accelerate_config": "zero3",
    "launch.devices": "[0,1]",
    "eval.lm_eval.batch_size": "3",
}


def _speed_overrides() -> list[str]:
    """``key=value`` changing every speed-only field of the run's schema (``spec(..., speed=True)``)."""
    from conftest import compose
    from omegaconf import OmegaConf

    from synpo.schema import speed_fields

    cfg = compose(MICRO)
    out = []
    for key in speed_fields(cfg):
        value = OmegaConf.select(cfg, key)
        if key in OTHER_VALUES:
            out.append(f"{key}={OTHER_VALUES[key]}")
        elif isinstance(value, bool):
            out.append(f"{key}={str(not value).lower()}")
        elif isinstance(value, int):
            out.append(f"{key}={value + 1}")
        elif isinstance(value, float):
            out.append(f"{key}={value / 2}")
        else:
            raise AssertionError(f"{key}={value!r}: add a valid other value for it to OTHER_VALUES")
    return out


def test_changing_every_speed_setting_redoes_no_stage(micro_run, tmp_path, monkeypatch):
    """An out-of-memory fix (batch, shard, memory share, devices, launcher...) keeps every finished stage: no marker
    is rewritten and the results are the same."""
    import shutil

    reference_dir, _ = micro_run
    run_dir = tmp_path / "run"
    shutil.copytree(reference_dir, run_dir, symlinks=True)
    overrides = _speed_overrides()
    assert {"generator.batch_size", "scorer.shard_size", "launch.cpu_lanes", "trainer.save_steps"} <= {
        o.split("=")[0] for o in overrides
    }
    stages = run_dir / ".stages"
    before = {p.name: p.read_text() for p in stages.iterdir()}
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node-a")  # launch.srun=true is refused outside a SLURM allocation
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "1")
    rerun = run_cli(run_dir, *overrides)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    after = {p.name: p.read_text() for p in stages.iterdir()}
    assert after == before, sorted(n for n in after if after[n] != before.get(n))
    assert " running" not in rerun.stdout + rerun.stderr

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in ("seconds", "compute")} for r in rows]

    got = json.loads((run_dir / "results.json").read_text())["iterations"]
    want = json.loads((reference_dir / "results.json").read_text())["iterations"]
    assert strip(got) == strip(want)


def test_enabling_an_eval_group_redoes_no_validation(micro_run, tmp_path):
    """Validation depends on its own fields only: adding the diversity group (and changing the blocks of groups that
    stay off) runs the new group and redoes no validation, also of a candidate whose model was pruned."""
    import shutil

    reference_dir, _ = micro_run
    run_dir = tmp_path / "run"
    shutil.copytree(reference_dir, run_dir, symlinks=True)
    assert list(run_dir.glob("iter_1/beta_*/model.pruned")), "the micro run keeps one candidate"
    stages = run_dir / ".stages"
    before = {p.name: p.read_text() for p in stages.glob("*eval*")}
    rerun = run_cli(run_dir, "eval=[validation,diversity]", "eval.diversity.max_prompts=40", "eval.winrate.n_boot=7")
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    after = {p.name: p.read_text() for p in stages.glob("*eval*")}
    assert {n: after[n] for n in before} == before
    assert sorted(set(after) - set(before)) == ["iter_0__evals__diversity.json", "iter_1__evals__diversity.json"]


@pytest.mark.slow
def test_the_content_study_options_change_the_pairs_and_the_improver_data(micro_run, tmp_path):
    """method.rejected=previous makes pi_{t-1}'s own draft the rejected side; improver_right_drafts=copy keeps an
    example for every right draft (the gap filter alone drops most of them). Resumed from the finished micro run:
    the stages before the improver are not redone."""
    import shutil

    from synpo.artifacts import read_jsonl
    from synpo.scoring.verifier import VerifierScorer

    reference_dir, _ = micro_run
    run_dir = tmp_path / "run"
    shutil.copytree(reference_dir, run_dir, symlinks=True)
    proc = run_cli(run_dir, "method.rejected=previous", "method.improver_right_drafts=copy")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stage iter_1/seed_policy" in proc.stdout + proc.stderr and "done earlier" in proc.stdout + proc.stderr
    rows = read_jsonl(run_dir / "iter_1" / "scores.jsonl")
    assert rows and all(r["rejected"] == r["policy"] for r in rows)
    seed = read_jsonl(run_dir / "iter_1" / "seed_policy.jsonl")
    right = sum(VerifierScorer().exact([r["prompt"] for r in seed], [r["response"] for r in seed]))
    new = json.loads((run_dir / "results.json").read_text())["iterations"][1]
    old = json.loads((reference_dir / "results.json").read_text())["iterations"][1]
    assert right > 0 and new["improver_examples"] >= right and new["improver_examples"] > old["improver_examples"]
    # chosen_content=right: only pairs whose chosen answer is right in content are kept (the verifier's exact)
    proc = run_cli(
        run_dir, "method.rejected=previous", "method.improver_right_drafts=copy", "method.chosen_content=right"
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_jsonl(run_dir / "iter_1" / "scores.jsonl")
    exact = VerifierScorer().exact([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    kept = [r["kept"] for r in rows]
    assert any(kept) and all(e for e, k in zip(exact, kept, strict=True) if k)
    assert sum(kept) < sum(r["gap"] > 0.1 for r in rows)  # some pairs past the gap were dropped for their content
    # seed_pairs: gold over pi_{t-1}'s own seed answer joins the candidates (content pairs)
    proc = run_cli(run_dir, "method.seed_pairs=5")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    gold = {r["prompt"]: r["answer"] for r in read_jsonl(run_dir / "seed" / "train.jsonl")}
    drafts = {r["prompt"]: r["response"] for r in read_jsonl(run_dir / "iter_1" / "seed_policy.jsonl")}
    seeded = [r for r in read_jsonl(run_dir / "iter_1" / "scores.jsonl") if r.get("seed")]
    assert len(seeded) == 5 and all(r["kept"] and r["gap"] > 0.1 for r in seeded)
    assert all(r["chosen"] == gold[r["prompt"]] and r["rejected"] == drafts[r["prompt"]] for r in seeded)
