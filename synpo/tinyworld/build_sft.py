"""Build pi_0 for the tiny world: tokenizer, a randomly initialised tiny Llama, and its SFT (shipped in checkpoint/).

    python -m synpo.tinyworld.build_sft                       # rebuilds synpo/tinyworld/checkpoint (about 5 min)
    python -m synpo.tinyworld.build_sft --out /tmp/sft --steps 20

The SFT mixture mirrors what a zephyr-style SFT model knows (docs/ARCHITECTURE.md, "The tiny world"):

- task examples, 80% with terse targets and 20% with gold full-sentence targets, so that pi_0 answers mostly tersely
  while the seed set's gold answers carry a quality the SFT data mostly lacks;
- improvement examples in the improver template (a corrupted or terse draft -> the gold answer);
- keyword -> question examples in the generator template. Recorded choice: they are in the mixture so that the
  per-run generator fine-tune (trained once from pi_0) stays short on 2 CPU cores; a real SFT model already follows
  such instructions.

Per-family accuracy of the result is written to ``manifest.json`` beside the weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import tempfile
import time
from pathlib import Path

from synpo.prompts import generator_prompt, generator_target, improver_prompt
from synpo.tinyworld.tasks import FAMILIES, NOUNS, Task, keyword_pool, sample_task

DEFAULT_OUT = Path(__file__).parent / "checkpoint"
TERSE_SHARE = 0.8


def corrupt(task: Task, rng: random.Random) -> str:
    """A plausible bad draft for ``task``: terse, wrong, truncated or repetitive."""
    terse = task.terse()
    kind = rng.randrange(5)
    if kind == 0:
        return terse
    if kind == 1:  # wrong content
        tokens = terse.split()
        if len(tokens) > 1:
            rng.shuffle(tokens)
        elif tokens[0].isdigit():
            tokens = [str(max(0, int(tokens[0]) + rng.choice([-3, -2, -1, 1, 2, 3])))]
        else:
            tokens = [tokens[0].lower()]
        return " ".join(tokens)
    if kind == 2:  # gold sentence with wrong content
        wrong = Task(task.family, task.args)
        return wrong.gold().replace(terse, corrupt(task, rng) if rng.random() < 0.5 else terse.lower())
    if kind == 3:  # truncated
        words = task.gold().split()
        return " ".join(words[: max(1, len(words) // 2)])
    return " ".join([terse] * rng.randint(2, 3))  # repetitive


def sft_examples(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    pool = keyword_pool()
    examples = []
    for _ in range(n):
        task = sample_task(rng)
        r = rng.random()
        if r < 0.75:
            target = task.terse() if rng.random() < TERSE_SHARE else task.gold()
            examples.append({"prompt": task.prompt, "completion": target})
        elif r < 0.9:
            examples.append({"prompt": improver_prompt(task.prompt, corrupt(task, rng)), "completion": task.gold()})
        else:
            own = task.keywords()
            keywords = rng.sample(own, 2) + [rng.choice([k for k in pool if k not in own])]
            rng.shuffle(keywords)
            examples.append(
                {"prompt": generator_prompt(keywords), "completion": generator_target(task.prompt, task.gold())}
            )
    return examples


def tokenizer_corpus(examples: list[dict]) -> list[str]:
    words = list(NOUNS) + [w.upper() for w in NOUNS] + [str(i) for i in range(200)]
    return [e["prompt"] + "\n" + e["completion"] for e in examples] + [" ".join(words)] * 20


def family_accuracy(model_dir: Path, n_per_family: int = 40, seed: int = 12345) -> dict:
    """Greedy per-family exact-content rate, mean verifier score and full-form rate of a tiny-world model."""
    from synpo.generation.hf import HFGenerator
    from synpo.generation.protocol import SamplingParams
    from synpo.tinyworld.verifier import verify

    rng = random.Random(seed)
    tasks = [sample_task(rng, f) for f in FAMILIES for _ in range(n_per_family)]
    responses = HFGenerator(batch_size=64).generate(
        str(model_dir), [t.prompt for t in tasks], SamplingParams(temperature=0.0, max_new_tokens=48, seed=seed)
    )
    report = {}
    for family in FAMILIES:
        verdicts = [verify(t, r) for t, r in zip(tasks, responses, strict=True) if t.family == family]
        report[family] = {
            "exact": round(sum(v.exact for v in verdicts) / len(verdicts), 3),
            "score": round(sum(v.score for v in verdicts) / len(verdicts), 3),
            "full_form": round(sum(v.form == 1.0 for v in verdicts) / len(verdicts), 3),
        }
    return report


def build(out: Path, steps: int, seed: int, n_examples: int, arch: str = "llama") -> dict:
    import torch
    import transformers
    import trl

    from synpo.tinyworld.model import build_model, build_tokenizer
    from synpo.training.common import HParams
    from synpo.training.sft import train_sft

    t0 = time.perf_counter()
    examples = sft_examples(n_examples, seed)
    tokenizer = build_tokenizer(tokenizer_corpus(examples))
    model = build_model(tokenizer, arch=arch, seed=seed)
    hp = HParams(
        learning_rate=2e-3,
        max_steps=steps,
        batch_size=64,
        warmup_ratio=0.05,
        scheduler="cosine",
        weight_decay=0.01,
        max_length=160,
        seed=seed,
    )
    with tempfile.TemporaryDirectory() as tmp:
        init = Path(tmp) / "init"
        model.save_pretrained(init)
        tokenizer.save_pretrained(init)
        stats = train_sft(str(init), examples, Path(tmp) / "sft", hp)
        out = Path(out)
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(Path(tmp) / "sft", out)
    for junk in ("training_args.bin",):
        (out / junk).unlink(missing_ok=True)
    manifest = {
        "command": f"python -m synpo.tinyworld.build_sft --steps {steps} --seed {seed} --examples {n_examples}",
        "arch": arch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "seed": seed,
        "steps": steps,
        "train": stats,
        "terse_share": TERSE_SHARE,
        "build_seconds": round(time.perf_counter() - t0, 1),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
        "accuracy": family_accuracy(out),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=60000)
    parser.add_argument("--arch", choices=["llama", "mistral"], default="llama")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    manifest = build(args.out, args.steps, args.seed, args.examples, args.arch)
    logging.getLogger(__name__).info("built %s\n%s", args.out, json.dumps(manifest["accuracy"], indent=2))


if __name__ == "__main__":
    main()
