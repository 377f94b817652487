"""Per-rank memory of loading a model under ZeRO-3 (issue 23 item 4): with the trainer's arguments made first (the
jobs' order since the fix: DeepSpeed's config is registered with transformers, so ``from_pretrained`` creates the
weights partitioned, ``deepspeed.zero.Init``) against the model loaded first (the old order: each rank holds a whole
copy until DeepSpeed partitions it at ``prepare``).

    python experiments/benchmarks/zero3_load.py [--processes 2] [--dtype bfloat16] [--layers 16] [--width 1024]

Builds a Llama of random weights (``--layers`` x ``--width``, a 32k vocabulary: 335M parameters at the defaults)
in a temporary directory, then for each order launches ``accelerate launch`` with ``conf/accelerate/zero3.yaml`` on
``--processes`` CPU processes (gloo). Each rank reads its resident size before the load (``VmRSS``), after it, and
its lifetime peak after it (``VmHWM``), the anonymous memory the load added (``RssAnon``: what the process keeps,
without the checkpoint's file pages that the kernel may drop), and the share of the parameters it holds
(``held_share``). The libraries are imported before the first reading. Printed: one row per order and rank, and each
order's largest rank peak over its resident size before the load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def rank_job(model: str, order: str, dtype: str, out: Path) -> None:
    """One rank: load ``model`` in ``order`` and write what it held to ``out/<order>-<rank>.json``."""
    import gc

    import accelerate  # noqa: F401  (imported before the measure: a library's import is not the load's memory)
    import deepspeed  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401
    from transformers import TrainingArguments

    from synpo.modeling import load_causal_lm
    from synpo.training.common import HParams, held_share, process_rank, training_model, trl_common_kwargs

    hp = HParams(batch_size=1, max_steps=1, dtype=dtype)
    before, anon_before = _status_mib("VmRSS"), _status_mib("RssAnon")
    with tempfile.TemporaryDirectory() as work:
        if order == "model first":
            loaded = load_causal_lm(model, dtype)
            TrainingArguments(**trl_common_kwargs(hp, Path(work), 8))
        else:
            args = TrainingArguments(**trl_common_kwargs(hp, Path(work), 8))
            loaded = training_model(model, hp, args)
        gc.collect()
        row = {
            "order": order,
            "rank": process_rank(),
            "rss_before_mib": round(before, 1),
            "rss_after_mib": round(_status_mib("VmRSS"), 1),
            "anon_rise_mib": round(_status_mib("RssAnon") - anon_before, 1),
            "peak_mib": round(_status_mib("VmHWM"), 1),
            "held_share": round(held_share(loaded), 4),
        }
    (out / f"{order.replace(' ', '_')}-{row['rank']}.json").write_text(json.dumps(row))


def build_model(path: Path, layers: int, width: int) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from synpo.modeling import load_tokenizer

    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=width // 64,
        num_key_value_heads=width // 64,
        max_position_embeddings=2048,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    load_tokenizer("builtin:tiny-sft").save_pretrained(path)  # any tokenizer: only the weights are loaded
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--rank-job", nargs=3, metavar=("MODEL", "ORDER", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rank_job:
        return rank_job(a.rank_job[0], a.rank_job[1], a.dtype, Path(a.rank_job[2]))
    from synpo.training.launch import free_port, resolved_accelerate_config

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        params = build_model(tmp / "model", a.layers, a.width)
        size = params * (2 if a.dtype == "bfloat16" else 4) / 2**20
        print(f"model: {params / 1e6:.0f}M parameters, a whole copy {size:.0f} MiB in {a.dtype}")
        config = resolved_accelerate_config("zero3", tmp / "accelerate.yaml")
        rows = []
        for order in ("model first", "arguments first"):
            cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
            cmd += ["--num_processes", str(a.processes), "--main_process_port", str(free_port())]
            cmd += [__file__, "--dtype", a.dtype, "--rank-job", str(tmp / "model"), order, str(tmp)]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{order}: the launch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            rows += [json.loads(p.read_text()) for p in sorted(tmp.glob(f"{order.replace(' ', '_')}-*.json"))]
    print(
        "| order | rank | RSS before load MiB | RSS after MiB | peak MiB | peak - before | anonymous memory added | held share |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        rise = r["peak_mib"] - r["rss_before_mib"]
        print(
            f"| {r['order']} | {r['rank']} | {r['rss_before_mib']:.0f} | {r['rss_after_mib']:.0f} | "
            f"{r['peak_mib']:.0f} | {rise:.0f} | {r['anon_rise_mib']:.0f} | {r['held_share']:.3f} |"
        )
    for order in ("model first", "arguments first"):
        mine = [r for r in rows if r["order"] == order]
        worst = max(r["peak_mib"] - r["rss_before_mib"] for r in mine)
        after = max(r["anon_rise_mib"] for r in mine)
        print(
            f"{order}: the largest rank's load peak {worst:.0f} MiB, anonymous memory kept {after:.0f} MiB "
            f"({worst / size:.2f} and {after / size:.2f} of a whole copy)"
        )


if __name__ == "__main__":
    main()
