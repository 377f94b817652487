"""The plan against a finished run: predicted tokens (``synpo.plan``) beside the tokens the run counted
(``synpo.compute``), per stage kind and iteration.

The plan's length assumptions are measured from the run's own files (mean rendered prompt, seed answer, generated
answer and generator request, in the model's tokens; the share of valid synthetic prompts), so what is checked is the
plan's structure: which stages run, on how many sequences, with how many passes. What it cannot know before the run
is printed beside: how many improver examples and pairs survive the filters.

    python experiments/benchmarks/plan_check.py runs/synpo_tiny_tinyworld
"""

from __future__ import annotations

import sys
from pathlib import Path
from statistics import fmean

from omegaconf import OmegaConf

from synpo.artifacts import read_json, read_jsonl
from synpo.cost import Assumptions
from synpo.modeling import load_tokenizer, render_prompts
from synpo.plan import workloads

# plan stage (its first words) -> the stage kinds the run counts it under
KINDS = {
    "generator SFT": ["generator"],
    "synthetic prompts": ["prompts"],
    "pi_0 and pi_{t-1} answers": ["initial", "policy"],
    "pi_{t-1} seed answers": ["seed_policy"],
    "improver SFT": ["improver"],
    "improver rewrites": ["refined"],
    "SimPO": ["simpo"],
    "validation answers": ["eval"],
}


def measured(run: Path, cfg) -> Assumptions:
    tok = load_tokenizer(cfg.model.name_or_path)

    def n(texts):
        return fmean(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)

    seed = read_jsonl(run / "seed" / "train.jsonl")
    answers = [
        r["response"]
        for t in range(1, cfg.method.iterations + 1)
        for r in read_jsonl(run / f"iter_{t}" / "policy.jsonl")
    ]
    raw = read_jsonl(run / "iter_1" / "prompts_raw.jsonl")
    kept = len(read_jsonl(run / "iter_1" / "prompts.jsonl"))
    refined = read_jsonl(run / "iter_1" / "refined.jsonl")
    policy = read_jsonl(run / "iter_1" / "policy.jsonl")
    rows = read_json(run / "results.json")["iterations"][1:]
    prompt_tokens = n(render_prompts(tok, [r["prompt"] for r in seed]))
    first = seed[0]
    tagged = f"<question>{first['prompt']}</question> <solution>{first['answer']}</solution>"
    answer_tokens = n(answers) + 1  # + the end-of-turn token
    around = n(render_prompts(tok, [r["prompt"] for r in refined])) - n(r["prompt"] for r in policy) - answer_tokens
    return Assumptions(
        prompt_tokens=round(prompt_tokens),
        template_tokens=round(prompt_tokens - n(r["prompt"] for r in seed)),
        tag_tokens=round(n([tagged]) - n([first["prompt"]]) - n([first["answer"]])),
        gold_tokens=round(n(r["answer"] for r in seed) + 1),
        answer_fill=answer_tokens / cfg.generator.max_new_tokens,
        request_fill=(n(r["response"] for r in raw) + 1) / cfg.generator.max_new_tokens,
        request_tokens=round(n(render_prompts(tok, [r["prompt"] for r in raw]))),
        improver_overhead=round(around),
        valid_share=kept / len(raw),
        improver_keep=fmean(r["improver_examples"] / r["improver_candidates"] for r in rows),
        pair_keep=fmean(r["n_pairs_added"] for r in rows) / cfg.method.pairs_per_iteration,
    )


def main(run: Path) -> None:
    cfg = OmegaConf.load(run / "config.yaml")
    a = measured(run, cfg)
    rows = read_json(run / "results.json")["iterations"]
    print(f"assumptions measured from {run}: {vars(a)}\n")
    print("| iteration | plan stage | predicted tokens | counted | predicted / counted |")
    print("|---|---|---|---|---|")
    for t, works in enumerate(workloads(cfg, a), 1):
        for w in works:
            kinds = next((k for name, k in KINDS.items() if w.stage.startswith(name)), None)
            if kinds is None:
                continue
            row = rows[0] if w.stage == "generator SFT" else rows[t]  # G is trained before iteration 1
            counted = sum((row.get("compute") or {}).get(k, {}).get("tokens", 0) for k in kinds)
            predicted = w.tokens * w.passes
            ratio = f"{predicted / counted:.2f}" if counted else "-"
            print(f"| {t} | {w.stage} | {predicted:,.0f} | {counted:,} | {ratio} |")
    kept = [(r.get("improver_examples"), r.get("improver_candidates"), r.get("n_pairs_added")) for r in rows[1:]]
    print(
        f"\nimprover examples kept of candidates, and pairs added, per iteration (measured above as improver_keep and pair_keep): {kept}"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
