"""The stage toolkit the methods and evaluation groups are written with.

``Context`` holds what every stage of a run needs (the run's settings, run directory, generator, scorer, pi_0, the seed split)
and the stages that several methods share: generate answers, compare two answer sets, fine-tune pi_0. Each goes
through ``Context.stage``, which runs or skips a resumable stage of the run directory (``RunDir.stage``) and adds its
wall seconds, its model arithmetic (``synpo.compute``) and, for generation, its truncated answers to the iteration's
stats under a kind (``generate``, ``scores``, ``sft``, ...).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from synpo.artifacts import (
    COMPUTE,
    RunDir,
    StageRecord,
    keep_only_shards_of,
    read_jsonl,
    sibling,
    stage_seed,
    write_jsonl,
)
from synpo.compute import add_compute
from synpo.generation.protocol import Generator, SamplingParams, generation_compute
from synpo.schema import identity
from synpo.scoring import Comparison, Scorer, compare_in_shards
from synpo.training.config import hparams


@dataclass
class StageStats:
    """Per stage kind in the current iteration: wall seconds (a skipped stage adds nothing; stages of a kind that ran
    at once, such as beta candidates in lanes, count their common time once) and answers cut off at the token limit
    (generation stages)."""

    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # (start, end), perf_counter
    truncated: dict[str, int] = field(default_factory=dict)
    compute: dict[str, dict] = field(default_factory=dict)

    def add(self, kind: str, record: StageRecord) -> None:
        """Count ``record``, a stage that has just ended, under ``kind``."""
        spans = self.spans.setdefault(kind, [])
        if not record.skipped:
            end = time.perf_counter()
            spans.append((end - record.seconds, end))
        if "n_truncated" in record.info:
            self.truncated[kind] = self.truncated.get(kind, 0) + record.info["n_truncated"]
        if record.compute is not None and not record.skipped:
            self.compute[kind] = add_compute(self.compute.get(kind), record.compute)

    def take(self) -> dict:
        """This iteration's ``{"seconds", "truncated", "compute"}`` by stage kind (``compute``: the model arithmetic
        of the stages that ran now, ``synpo.compute``); the next iteration starts from zero."""
        seconds = {kind: covered_seconds(spans) for kind, spans in self.spans.items()}
        out = {"seconds": seconds, "truncated": self.truncated, "compute": self.compute}
        self.spans, self.truncated, self.compute = {}, {}, {}
        return out


def covered_seconds(spans: list[tuple[float, float]]) -> float:
    """The length of the union of ``(start, end)`` intervals: time during which at least one of them ran."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return round(total, 3)


@dataclass(frozen=True)
class RunSettings:
    """The blocks of a run's config that its stages read, each typed by its group's schema. Not the whole config:
    the logger, Hydra's own keys and the run directory stay with the loop (``synpo.pipeline``), so a method or an
    evaluation group cannot depend on how a run is logged or where it lives."""

    seed: int
    name: str
    model: DictConfig
    data: DictConfig
    method: DictConfig
    trainer: DictConfig
    sft_trainer: DictConfig
    generator: DictConfig
    scorer: DictConfig
    launch: DictConfig
    eval: DictConfig

    @classmethod
    def of(cls, cfg: DictConfig) -> RunSettings:
        from dataclasses import fields

        return cls(**{f.name: cfg[f.name] for f in fields(cls)})


@dataclass
class Context:
    """What every stage of a run needs: the run's settings, the run directory, and the components it configured."""

    run: RunSettings
    rundir: RunDir
    generator: Generator
    scorer: Scorer
    pi0: str
    seed_train: list[dict]
    seed_val: list[dict]
    seed_record: StageRecord
    stats: StageStats = field(default_factory=StageStats)

    def seed_for(self, name: str) -> int:
        return stage_seed(self.run.seed, name)

    def seed_prompts(self) -> set[str]:
        """Every prompt of the seed split, train and validation (what fresh prompts of the world must avoid)."""
        return {r["prompt"] for r in self.seed_train + self.seed_val}

    def stage(
        self,
        name: str,
        settings: Any,
        outputs: list[Path] | dict[str, Path],
        fn: Callable[[], dict | None],
        deps: Iterable[StageRecord | str] = (),
        kind: str | None = None,
        former: Iterable[Any] = (),
    ) -> StageRecord:
        """``RunDir.stage``, timed under ``kind`` (default: the stage name's last part)."""
        record = self.rundir.stage(name, settings, outputs, fn, deps, former)
        self.stats.add(kind or name.rsplit("/", 1)[-1], record)
        return record

    # --- stages shared by the methods ---------------------------------------------------------------------------

    def sampling(
        self, name: str, temperature: float | None = None, max_new_tokens: int | None = None, n: int = 1, stop=()
    ):
        g = self.run.generator
        return SamplingParams(
            temperature=g.temperature if temperature is None else temperature,
            top_p=g.top_p,
            max_new_tokens=g.max_new_tokens if max_new_tokens is None else max_new_tokens,
            seed=self.seed_for(name),
            n=n,
            stop=tuple(stop),
        )

    def generate(
        self,
        name: str,
        model: str,
        prompts: list,
        out: Path,
        deps: list,
        temperature: float | None = None,
        extra: list[dict] | None = None,
        max_new_tokens: int | None = None,
        kind: str | None = None,
        n: int = 1,
        stop: tuple[str, ...] = (),
    ) -> StageRecord:
        """Answers of ``model`` to ``prompts``, written to ``out`` as rows ``{prompt, response, finish_reason,
        **extra}``; the stage's info counts the answers cut off at the token limit (``n_truncated``). With ``n`` > 1,
        one generation call samples ``n`` answers per prompt: ``n`` rows per prompt, prompt-major, each with its
        ``sample`` index. An answer ends at a ``stop`` string too (kept in it)."""
        sampling = self.sampling(name, temperature, max_new_tokens, n, stop)
        shard_dir = sibling(out, "shards")
        settings = {
            "model": model,
            "prompts": prompts,
            "sampling": sampling.__dict__,
            "backend": identity(self.run.generator),
        }

        def fn():
            keep_only_shards_of(shard_dir, {**settings, "shard_size": self.run.generator.shard_size})
            if self.generator.runs_apart:  # a vLLM engine checks that the accelerator is free when it starts
                self.free_devices()
            responses = self.generator.generate(model, prompts, sampling, shard_dir=shard_dir)
            rows = []
            for i, r in enumerate(responses):  # prompt-major: prompt i // n, its sample i % n
                k, j = divmod(i, n)
                row = {"prompt": prompts[k], "response": str(r), "finish_reason": r.finish_reason}
                rows.append({**row, **({"sample": j} if n > 1 else {}), **(extra[k] if extra else {})})
            write_jsonl(out, rows)
            shutil.rmtree(shard_dir, ignore_errors=True)
            return {
                "n": len(rows),
                "n_truncated": sum(r.truncated for r in responses),
                COMPUTE: generation_compute(responses),
            }

        return self.stage(name, settings, [out], fn, deps, kind or "generate")

    def scorer_settings(self) -> dict:
        """What the scorer's numbers depend on: its config without the speed-only fields and the threshold, which
        only filters."""
        settings = identity(self.run.scorer)
        settings.pop("threshold", None)
        return settings

    def compare_now(self, prompts: list[str], a: list[str], b: list[str], out: Path) -> Comparison:
        """``scorer.compare`` inside a running stage that writes ``out``, in resumable shards beside it."""
        shard_dir = sibling(out, "shards")
        s = self.run.scorer
        comparison = compare_in_shards(
            self.scorer, prompts, a, b, shard_dir, s.shard_size, self.scorer_settings(), s.replicas
        )
        return comparison

    def compare(self, name: str, prompts: list[str], a: list[str], b: list[str], out: Path, deps: list):
        """A stage: how much better ``a`` is than ``b`` per prompt, into ``out`` as rows ``{gap, score_a,
        score_b}``. Returns the record and the ``Comparison`` (read back when the stage was done earlier)."""

        def fn():
            comparison = self.compare_now(prompts, a, b, out)
            write_jsonl(out, comparison.rows())
            shutil.rmtree(sibling(out, "shards"), ignore_errors=True)
            return {"n": len(comparison.gaps)}

        settings = {"scorer": self.scorer_settings(), "prompts": prompts, "a": a, "b": b}
        record = self.stage(name, settings, [out], fn, deps, "scores")
        return record, Comparison.from_rows(read_jsonl(out))

    def free_devices(self) -> None:
        """Hand the accelerator over to what starts next (a training job, a vLLM engine, lm-eval): the generator
        drops the model it kept from its last stage, the scorer moves its model back to host memory, and the
        allocator's cache is emptied."""
        from synpo import memory

        self.generator.release()
        self.scorer.release()
        memory.free_accelerator()

    def train(self, kind: str, out: Path, **kwargs) -> dict:
        """A training job (``synpo.training.launch.run_training_job``) under the run's launch topology, on devices
        that no component of this process holds (``free_devices``)."""
        from synpo.training.launch import run_training_job

        self.free_devices()
        return run_training_job(kind, out, self.run.launch, data_dir=self.rundir.path("job_data"), **kwargs)

    def train_sft(self, name: str, examples: list[dict], out: Path, deps: list, max_length: int | None = None):
        """SFT of pi_0 on ``examples`` (sft_trainer settings; ``max_length`` overrides its max length)."""
        hp = hparams(self.run.sft_trainer, self.run.model, self.run.launch, self.seed_for(name))
        if max_length is not None:
            hp.max_length = max_length
        tr = self.run.model.trust_remote_code

        def fn():
            return self.train("sft", out, model_path=self.pi0, examples=examples, hp=hp, trust_remote_code=tr)

        return self.stage(name, {"hp": hp.identity(), "examples": examples, "from": self.pi0}, [out], fn, deps)
