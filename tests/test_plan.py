"""The plan (``python run.py <overrides> --plan``): the paper's settings priced on a machine without a GPU, from
their checkpoints' published shapes, and the arithmetic checked where it can be by hand."""

import subprocess
import sys

import pytest
from conftest import ROOT, compose

from synpo.cost import H100_BF16_PEAK, H100_HBM_BANDWIDTH, H100_MEMORY, Assumptions, decode_roofline_seconds, shape
from synpo.errors import UserError
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
    # SimPO trains without recomputation there, the SFT jobs with it: each at the MFU measured so
    improver = next(w for w in its[1] if w.stage == "improver SFT")
    assert not cfg.trainer.gradient_checkpointing and simpo.efficiency == a.train_mfu
    assert cfg.sft_trainer.gradient_checkpointing and improver.efficiency == a.train_mfu_checkpointed
    assert simpo.gpu_hours() == pytest.approx(simpo.flops / H100_BF16_PEAK / 3600 / a.train_mfu)
    # generation is bound by the HBM's bandwidth at these lengths, not by the arithmetic
    assert answers.bound_hours() > 2 * answers.flops / H100_BF16_PEAK / 3600
    assert answers.gpu_hours() == pytest.approx(answers.bound_hours() / a.decode_efficiency)


def _steps_one_by_one(model: dict, requests: list, a: Assumptions) -> float:
    """The decode roofline counted a step at a time: what ``decode_roofline_seconds`` sums in closed form."""
    weights, kv = 2.0 * model["matmul"], model["kv_bytes"]
    capacity = (H100_MEMORY * a.kv_memory_share - 2.0 * model["total"]) / kv
    waiting = [[p, n] for p, n, c in requests for _ in range(c) if n >= 1]
    running, seconds = [], 0.0  # [context, tokens left, full length]
    while waiting or running:
        while waiting and len(running) < a.max_num_seqs:
            p, n = waiting[0]
            if sum(r[2] for r in running) + p + n > capacity:
                break
            seconds += 2.0 * model["matmul"] * p / H100_BF16_PEAK
            running.append([p, n, p + n])
            waiting.pop(0)
        memory = (weights + kv * sum(r[0] for r in running)) / H100_HBM_BANDWIDTH
        seconds += max(memory, 2.0 * model["matmul"] * len(running) / H100_BF16_PEAK)
        for r in running:
            r[0], r[1] = r[0] + 1, r[1] - 1
        running = [r for r in running if r[1] > 0]
    return seconds


def test_the_decode_roofline_is_the_step_by_step_count():
    """Ragged requests through a small batch (places free up at different steps, a KV cache that fills) and a
    batch wide enough that its first steps are bound by the arithmetic and its later ones by the memory traffic."""
    model = {"matmul": 1e8, "total": 1.2e8, "kv_bytes": 4e4}  # 0.2 GB of weights; 40 kB of KV cache a token
    ragged = [(30, 17, 1), (5, 40, 2), (120, 3, 1), (64, 0, 3), (9, 25, 4), (200, 60, 1)]
    a = Assumptions(max_num_seqs=3)
    assert decode_roofline_seconds(model, ragged, a) == pytest.approx(_steps_one_by_one(model, ragged, a), rel=1e-9)
    small_cache = Assumptions(max_num_seqs=64, kv_memory_share=(2.4e8 + 4e4 * 300) / H100_MEMORY)  # 300 tokens
    assert decode_roofline_seconds(model, ragged, small_cache) == pytest.approx(
        _steps_one_by_one(model, ragged, small_cache), rel=1e-9
    )
    wide = Assumptions(max_num_seqs=1000)
    uniform = [(8, 60, 1500)]
    bound = decode_roofline_seconds(model, uniform, wide)
    assert bound == pytest.approx(_steps_one_by_one(model, uniform, wide), rel=1e-9)
    first = (2e8 + 4e4 * 8 * 1000) / H100_HBM_BANDWIDTH
    assert first < 2e8 * 1000 / H100_BF16_PEAK  # the first step of the first 1000 is bound by the arithmetic


def test_one_request_decodes_at_the_bandwidth_by_hand():
    """One 100-token prompt and a 10-token answer on Mistral-7B: the prefill at the peak, then 10 steps that each read
    the weights and the context's KV cache (131,072 bytes a token: 32 layers x 8 KV heads x 128 x key and value x 2
    bytes)."""
    m = shape("alignment-handbook/zephyr-7b-sft-full")
    assert m["kv_bytes"] == 131_072
    by_hand = 2 * m["matmul"] * 100 / H100_BF16_PEAK
    by_hand += sum((2 * m["matmul"] + 131_072 * (100 + k)) / H100_HBM_BANDWIDTH for k in range(10))
    assert decode_roofline_seconds(m, [(100, 10, 1)], Assumptions()) == pytest.approx(by_hand, rel=1e-9)


def test_a_request_that_no_gpu_holds_is_a_sentence():
    m = shape("alignment-handbook/zephyr-7b-sft-full")
    with pytest.raises(UserError, match="tensor parallelism"):
        decode_roofline_seconds(m, [(400_000, 100_000, 1)], Assumptions())


def test_the_decode_efficiency_of_a_benchmark_result(tmp_path):
    """``experiments/benchmarks/decode_efficiency.py``: a ``vllm bench serve`` result's roofline over its duration;
    a file without the fields is refused with a sentence."""
    result = {"input_lens": [100, 7], "output_lens": [10, 0], "duration": 0.5}
    (tmp_path / "r.json").write_text(__import__("json").dumps(result))
    script = str(ROOT / "experiments" / "benchmarks" / "decode_efficiency.py")
    cmd = [sys.executable, script, str(tmp_path / "r.json"), "--model", "alignment-handbook/zephyr-7b-sft-full"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = __import__("json").loads(proc.stdout)
    m = shape("alignment-handbook/zephyr-7b-sft-full")
    bound = decode_roofline_seconds(m, [(100, 10, 1)], Assumptions())
    assert out["requests"] == 1 and out["decode_efficiency"] == pytest.approx(bound / 0.5, rel=1e-9)
    (tmp_path / "bad.json").write_text('{"input_lens": [1]}')
    proc = subprocess.run([*cmd[:2], str(tmp_path / "bad.json"), *cmd[3:]], capture_output=True, text=True)
    assert proc.returncode == 2 and "no output_lens, duration" in proc.stderr and "Traceback" not in proc.stderr


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


@pytest.mark.parametrize(
    "width,inter,heads,kv_heads", [(256, 688, 8, 2), (384, 1024, 6, 6)]
)  # grouped-query attention as Mistral and Llama-3 have, and full multi-head as Llama-2 has
def test_the_activation_model_is_what_the_llama_code_saves_for_backward(tmp_path, width, inter, heads, kv_heads):
    """``cost.activation_bytes`` against the bytes HF's Llama code really saves for the backward pass, in bf16: the
    difference between a 2-layer and a 1-layer model is one layer's; what is left is outside the layers."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from synpo.cost import activation_bytes
    from synpo.memory import saved_for_backward_bytes

    config = LlamaConfig(
        vocab_size=1000,
        hidden_size=width,
        intermediate_size=inter,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        num_hidden_layers=1,
    )
    config.save_pretrained(tmp_path)
    per_layer, outside = activation_bytes(shape(str(tmp_path)))
    ids = torch.randint(0, 1000, (2, 128))
    saved = []
    for layers in (1, 2):
        config.num_hidden_layers = layers
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.bfloat16)
        saved.append(saved_for_backward_bytes(model.train(), ids) / ids.numel())
    assert saved[1] - saved[0] == pytest.approx(per_layer, rel=0.01)
    assert saved[0] - per_layer == pytest.approx(outside, rel=0.05)
    model.activation_checkpointing_enable()  # the 2-layer model: each layer keeps its input alone
    checkpointed = saved_for_backward_bytes(model, ids) / ids.numel()
    assert checkpointed - outside == pytest.approx(2 * 2 * width, rel=0.05)


def test_the_plan_prices_each_training_job_s_memory_and_flags_one_over_a_gpu():
    """Pairs are two sequences; the SFT jobs' longest sequences are priced too; a setting that cannot fit an 80 GB
    GPU is named with what to change."""
    from omegaconf import OmegaConf

    from synpo.cost import training_memory_gib
    from synpo.plan import render

    cfg = compose(["experiment=mistral_synpo"])
    m = shape(cfg.model.name_or_path)
    single = OmegaConf.merge(cfg.trainer, {"batch_size": 4})
    assert training_memory_gib(m, cfg.trainer, 8, m["vocab"], pairs=True) == pytest.approx(
        training_memory_gib(m, single, 8, m["vocab"], pairs=False)
    )  # 2 pairs hold what 4 sequences do
    a = Assumptions()
    out = render(cfg, workloads(cfg, a), a)
    assert "the preference trainer about" in out and "the SFT jobs about" in out and "over an 80 GB" not in out
    big = compose(["experiment=zephyr_spin", "trainer.gradient_checkpointing=false"])
    out = render(big, workloads(big, a), a)
    assert "**over an 80 GB GPU**; turn gradient checkpointing on or lower the batch_size" in out
    assert "the SFT jobs" not in out  # SPIN trains no SFT job


def test_overrides_that_do_not_compose_are_a_sentence():
    proc = subprocess.run(
        [sys.executable, "run.py", "experiment=nonesuch", "--plan"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "do not compose into a config" in proc.stderr and "mistral_synpo" in proc.stderr
    assert "Traceback" not in proc.stderr
