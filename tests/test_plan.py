"""The plan (``python run.py <overrides> --plan``): the paper's settings priced on a machine without a GPU, from
their checkpoints' published shapes, and the arithmetic checked where it can be by hand."""

import subprocess
import sys

import pytest
from conftest import ROOT, compose

from synpo.cost import Assumptions, shape
from synpo.plan import workloads


@pytest.mark.parametrize("experiment", ["mistral_synpo", "llama3_synpo", "zephyr_spin"])
def test_the_papers_settings_are_priced_before_any_work(experiment, tmp_path):
    cmd = [sys.executable, "run.py", f"experiment={experiment}", "--plan", f"hydra.run.dir={tmp_path}/never"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "GPU-hours" in out and "Training memory per GPU" in out and "Disk" in out and "Assumptions" in out
    assert not (tmp_path / "never").exists()  # nothing ran: no run directory was made
    assert "Traceback" not in proc.stderr


def test_the_published_shapes_give_the_known_sizes():
    assert shape("alignment-handbook/zephyr-7b-sft-full")["total"] == pytest.approx(7.24e9, rel=0.01)  # Mistral-7B
    assert shape("princeton-nlp/Llama-3-Base-8B-SFT")["total"] == pytest.approx(8.03e9, rel=0.01)  # Llama-3-8B
    assert shape("neuralmagic/Llama-2-7b-ultrachat200k")["total"] == pytest.approx(6.74e9, rel=0.01)  # Llama-2-7B


def test_synpo_workload_by_hand():
    """Iteration 2 of the Mistral setting: D holds 2 x 10k pairs; 6 SimPO candidates each train 2 sequences a pair, a
    200-token prompt with the chosen rewrite (sized like a 400-token reference answer, which the improver learned to
    write) or the rejected answer (0.5 x 2048 tokens), on average 200 + 712 tokens, for 1 epoch at 3 passes; pi_0 and
    pi_1 answer 90% of the 50k prompts (200 + 1024 tokens each); the improver reads a prompt's own text (200 less the
    chat template's 12), a 1024-token draft and 50 tokens of its template and the chat template's, and writes 400."""
    cfg = compose(["experiment=mistral_synpo"])
    a = Assumptions()
    its = workloads(cfg, a)
    assert len(its) == 4 and its[0][0].stage == "generator SFT"  # the generator is trained once, in iteration 1
    simpo = next(w for w in its[1] if w.stage.startswith("SimPO"))
    assert simpo.sequences == 6 * 2 * 20_000 and simpo.tokens == simpo.sequences * 912 and simpo.passes == 3
    assert simpo.models == 6
    answers = next(w for w in its[1] if w.stage == "pi_0 and pi_{t-1} answers")
    assert answers.sequences == 2 * 45_000 and answers.tokens == 90_000 * (200 + 1024)
    rewrites = next(w for w in its[1] if w.stage == "improver rewrites")
    assert rewrites.sequences == 45_000 and rewrites.tokens == pytest.approx(45_000 * (188 + 1024 + 50 + 400))
    policy = shape(cfg.model.name_or_path)
    assert simpo.flops == 2 * policy["matmul"] * simpo.tokens * 3


def test_a_second_node_idle_during_generation_is_priced():
    from synpo.plan import render

    cfg = compose(["experiment=mistral_synpo", "launch.num_machines=2", "launch.accelerate_config=zero3_multinode"])
    a = Assumptions()
    out = render(cfg, workloads(cfg, a), a)
    assert "**Idle nodes**: generation and scoring run on the first of 2 nodes" in out
    # training spans both nodes' 16 GPUs, so its wall hours are half the GPU-hours over 8
    simpo = next(line for line in out.splitlines() if "| 1 | SimPO" in line).strip("| ").split(" | ")
    assert "wall h on the 2 nodes" in out and float(simpo[-1]) == pytest.approx(float(simpo[-2]) / 16, abs=0.006)
    assert "Idle nodes" not in render(
        compose(["experiment=mistral_synpo"]), workloads(compose(["experiment=mistral_synpo"]), a), a
    )


def test_the_plan_does_not_need_vllm_installed_here():
    """A GPU run is priced from a laptop: the vLLM interpreter the run would use need not exist on this machine."""
    proc = subprocess.run(
        [sys.executable, "run.py", "experiment=mistral_synpo", "generator.python=/nonexistent/python", "--plan"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "GPU-hours" in proc.stdout, proc.stderr[-2000:]
