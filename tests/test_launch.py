"""`launch.launcher=accelerate`: the job file runs under `accelerate launch` with DeepSpeed ZeRO-2 on CPU (1 process)
and trains the same weights as the in-process launcher. Slow: the first run builds DeepSpeed's CPU comm op (about
a minute; cached in TORCH_EXTENSIONS_DIR)."""

import json
import threading
import time
from pathlib import Path

import pytest
from helpers import PAIRS
from omegaconf import OmegaConf

from synpo.artifacts import read_jsonl
from synpo.modeling import load_causal_lm
from synpo.training.common import HParams, prepare_workdir
from synpo.training.config import LaunchConfig
from synpo.training.launch import failure_excerpt, run_training_job

# Measured here: the largest weight difference between the two launchers was 3.6e-7 after 4 steps that moved the
# weights by up to 2.5e-3 (fp32 on CPU); the bound leaves room for reduction-order differences on other CPUs.
TOLERANCE = 1e-5


def _launch(launcher: str):
    return OmegaConf.structured(LaunchConfig(launcher=launcher, accelerate_config="zero2", num_processes=1))


@pytest.mark.slow
def test_accelerate_zero2_matches_inprocess(tmp_path):
    hp = HParams(batch_size=4, max_steps=4, learning_rate=1e-3, warmup_ratio=0.0, max_length=128, seed=3)
    kwargs = dict(model_path="builtin:tiny-sft", pairs=PAIRS, hp=hp, beta=2.0, gamma=1.6)
    local = run_training_job("simpo", tmp_path / "inprocess", _launch("inprocess"), **kwargs)
    launched = run_training_job("simpo", tmp_path / "zero2", _launch("accelerate"), **kwargs)
    assert local["deepspeed_zero_stage"] is None and launched["deepspeed_zero_stage"] == 2
    assert launched["steps"] == local["steps"] == 4
    job = json.loads((tmp_path / "zero2.job.json").read_text())
    assert job["kind"] == "simpo" and job["kwargs"]["beta"] == 2.0  # the ranks read this, never Hydra
    assert "pairs" not in job["kwargs"] and read_jsonl(Path(job["files"]["pairs"])) == PAIRS  # the rows' own file
    a, b = load_causal_lm(str(tmp_path / "inprocess")), load_causal_lm(str(tmp_path / "zero2"))
    start = load_causal_lm("builtin:tiny-sft")
    diffs, moved = [], []
    for (_, p), (_, q), (_, s) in zip(
        a.named_parameters(), b.named_parameters(), start.named_parameters(), strict=True
    ):
        diffs.append((p - q).abs().max().item())
        moved.append((p - s).abs().max().item())
    print(f"max |inprocess - zero2| = {max(diffs):.3g}; max |trained - start| = {max(moved):.3g}")
    assert max(moved) > 100 * TOLERANCE  # training moved the weights far more than the tolerance
    assert max(diffs) < TOLERANCE
    assert local["train_loss"] == pytest.approx(launched["train_loss"], abs=1e-4)


@pytest.mark.slow
def test_pipeline_trains_through_accelerate(tmp_path):
    """The SynPO pipeline with every training job launched by accelerate (ZeRO-2, 1 CPU process), the two beta
    candidates trained concurrently, each in its own process with its own "GPU" (CUDA_VISIBLE_DEVICES)."""
    from helpers import run_cli

    run_dir = tmp_path / "run"
    proc = run_cli(
        run_dir,
        "launch.launcher=accelerate",
        "launch.allow_cpu=true",  # accelerate means GPUs; here it runs DeepSpeed on the CPU on purpose
        "trainer.beta_grid=[2,10]",
        "launch.devices=[0,1]",
        "launch.concurrent_candidates=true",
        "launch.keep_candidates=true",  # both trained models are checked below
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for job in ("generator/model", "iter_1/improver/model", "iter_1/beta_2/model", "iter_1/beta_10/model"):
        result = json.loads((run_dir / f"{job}.result.json").read_text())
        assert result["deepspeed_zero_stage"] == 2 and result["processes"] == 1
        assert (run_dir / job / "config.json").is_file()
    jobs = [json.loads((run_dir / f"iter_1/beta_{x}/model.job.json").read_text()) for x in (2, 10)]
    assert jobs[0]["files"] == jobs[1]["files"] and "pairs" not in jobs[0]["kwargs"]  # one copy of D per iteration
    assert Path(jobs[0]["files"]["pairs"]).parent == run_dir / "job_data"
    a, b = (json.loads((run_dir / f"iter_1/beta_{x}/model.result.json").read_text()) for x in (2, 10))
    assert {a["cuda_visible_devices"], b["cuda_visible_devices"]} == {"0", "1"}  # disjoint device sets
    assert a["started"] < b["finished"] and b["started"] < a["finished"]  # the two trainings overlapped
    assert json.loads((run_dir / "results.json").read_text())["iterations"][1]["beta"] in (2.0, 10.0)


def test_training_rows_are_written_once_per_content(tmp_path):
    from synpo.training.launch import job_data_files

    first = job_data_files({"pairs": PAIRS, "beta": 2.0}, tmp_path)
    stamp = Path(first["pairs"]).stat().st_mtime_ns
    assert job_data_files({"pairs": list(PAIRS), "beta": 10.0}, tmp_path) == first  # another beta, the same D
    assert Path(first["pairs"]).stat().st_mtime_ns == stamp and read_jsonl(Path(first["pairs"])) == PAIRS
    other = job_data_files({"pairs": PAIRS[:3]}, tmp_path)
    assert other != first and len(list(tmp_path.glob("pairs-*.jsonl"))) == 2
    assert job_data_files({"examples": [{"prompt": "p", "response": "r"}]}, tmp_path).keys() == {"examples"}


def test_a_failed_launch_reports_the_ranks_traceback_not_only_the_launchers_summary():
    rank = ["noise\n"] * 50 + [
        "Traceback (most recent call last):\n",
        '  File "synpo/training/job.py", line 9, in <module>\n',
        "ValueError: the rank's own cause\n",
    ]
    launcher = ["more noise\n"] * 20 + ["Traceback (most recent call last):\n"]
    launcher += ['  File "torch/distributed/run.py"\n'] * 30 + ["ChildFailedError:\n", "rank 0 exitcode 1\n"]
    excerpt = failure_excerpt("".join(rank + launcher))
    assert "the rank's own cause" in excerpt and "rank 0 exitcode 1" in excerpt
    assert "the rank's own cause" not in "".join((rank + launcher)[-40:])  # the old last-40-lines tail lost it
    assert failure_excerpt("short log\n") == "short log\n"


def test_only_rank_0_clears_a_stale_scratch_directory_and_the_other_ranks_wait_for_its_stamp(tmp_path):
    """CI once failed on ZeRO-3 with FileExistsError: both ranks cleared `<out>.partial`, so one's mkdir met the
    other's directory. A rank other than 0 must leave a stale directory alone and return once rank 0 stamped it."""
    stale = tmp_path / "model.partial"
    stale.mkdir()
    (stale / "JOB").write_text("another job")
    (stale / "checkpoint-2").mkdir()
    key = {"hp": HParams(), "model": "builtin:tiny-sft"}
    got = {}
    rank1 = threading.Thread(target=lambda: got.update(work=prepare_workdir(tmp_path / "model", key, rank=1)))
    rank1.start()
    time.sleep(0.5)
    assert rank1.is_alive() and (stale / "checkpoint-2").is_dir()  # waiting, and nothing removed
    work = prepare_workdir(tmp_path / "model", key, rank=0)
    rank1.join(timeout=10)
    assert not rank1.is_alive() and got["work"] == work == stale
    assert not (stale / "checkpoint-2").exists()  # rank 0 cleared the other job's scratch
    assert prepare_workdir(tmp_path / "model", key, rank=1, wait_seconds=0.1) == work  # stamped: no wait


def test_a_rank_whose_rank_0_never_prepares_the_scratch_directory_says_why():
    with pytest.raises(RuntimeError, match="waited 0 s for rank 0 .* filesystem every node sees"):
        prepare_workdir(Path("/nonexistent/model"), {"model": "m"}, rank=1, wait_seconds=0.2)


def test_resume_passes_over_a_checkpoint_cut_off_while_it_was_written(tmp_path, caplog):
    from synpo.errors import UserError
    from synpo.training.common import complete_checkpoints

    work = tmp_path / "model.partial"
    for step, files in ((2, ["trainer_state.json", "model.safetensors"]), (4, ["model.safetensors"])):
        (work / f"checkpoint-{step}").mkdir(parents=True)
        for f in files:
            (work / f"checkpoint-{step}" / f).write_text("{}")
    assert complete_checkpoints(work, 1) == [work / "checkpoint-2"]  # checkpoint-4 has no trainer state yet
    assert "checkpoint-4 was cut off" in caplog.text

    ds = work / "checkpoint-6"  # a ZeRO checkpoint of 2 ranks: one optimizer shard each, and DeepSpeed's tag
    (ds / "global_step6").mkdir(parents=True)
    for rank in (0, 1):
        (ds / "global_step6" / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(b"")
    (ds / "trainer_state.json").write_text("{}")
    assert complete_checkpoints(work, 1)[-1] == work / "checkpoint-2"  # no `latest` tag: cut off
    (ds / "latest").write_text("global_step6")
    assert complete_checkpoints(work, 2)[-1] == ds
    with pytest.raises(UserError, match="written by 2 DeepSpeed ranks, and this job runs 8"):
        complete_checkpoints(work, 8)


def test_the_training_job_registry_covers_every_trainer_loss():
    """trainer.loss names a training job on pairs; DPO's holds a reference, SimPO's does not; job files carry the
    rows of every kind in files of their own."""
    from synpo.training.config import TRAINERS
    from synpo.training.launch import DATA_KEYS, JOBS, job_function

    assert set(TRAINERS) == {k for k, job in JOBS.items() if job.rows == "pairs"}
    assert JOBS["dpo"].reference and not JOBS["simpo"].reference
    assert set(DATA_KEYS) == {"pairs", "examples"}
    assert all(callable(job_function(k)) for k in JOBS)


def test_a_job_out_of_memory_is_a_paragraph_naming_the_speed_settings(tmp_path):
    """The markers are what torch itself says (the host allocator's failure is real here; the GPU's is torch's
    ``OutOfMemoryError``, a RuntimeError), and the paragraph names the block to change."""
    import torch

    from synpo.training.common import HParams
    from synpo.training.launch import OUT_OF_MEMORY, out_of_memory

    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**55, dtype=torch.uint8)
    assert any(m in str(caught.value) for m in OUT_OF_MEMORY)
    assert issubclass(torch.OutOfMemoryError, RuntimeError)
    assert f"{torch.OutOfMemoryError.__module__}.{torch.OutOfMemoryError.__name__}" in OUT_OF_MEMORY
    msg = str(out_of_memory("simpo", tmp_path, HParams(gradient_checkpointing=False)))
    assert "trainer.gradient_checkpointing on (it is off)" in msg and "trainer.batch_size" in msg and "--plan" in msg
    assert "sft_trainer.gradient_checkpointing" in str(out_of_memory("sft", tmp_path, HParams()))
