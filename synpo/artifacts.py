"""The run directory: its layout (every path is named here), atomic writes, JSONL with file:line errors, and
resumable stages (docs/ARCHITECTURE.md, "The run directory").

A stage is a named unit of work with a *fingerprint*: a hash of its own settings and of the fingerprints of the
stages it reads from. When it finishes, its marker ``<run>/.stages/<name>.json`` records the fingerprint and its wall
seconds. Running it again with the same fingerprint is a no-op; a changed fingerprint (its settings or any upstream
stage changed) removes its stale outputs and redoes it, and so every stage downstream of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synpo import memory
from synpo.errors import UserError

log = logging.getLogger(__name__)

# File names inside an iteration directory ``iter_<t>/`` that more than one module reads.
PAIRS = "pairs.jsonl"  # the preference pairs the iteration trains on (or adds to D)
PROMPTS = "prompts.jsonl"  # synthetic prompts (methods that make them)
VAL_ANSWERS = "val_answers.jsonl"  # validation answers and scores of a model
METRICS = "metrics.json"  # a validation's metrics, or the iteration's results row
POLICY_LINK = "policy"  # symlink to the iteration's selected model
COMPUTE = "compute"  # the key of a stage's model arithmetic (synpo.compute) in its info; kept beside the info

# Siblings of a stage output ``<out>``: what a stage keeps next to it while it works.
SIBLINGS = {
    "shards": ".shards",  # finished generation or scoring shards (a rerun keeps them)
    "partial": ".partial",  # a training job's scratch directory and step checkpoints
    "job": ".job.json",  # a training job for `accelerate launch`
    "result": ".result.json",  # what that job returned
    "accelerate": ".accelerate.yaml",  # the resolved accelerate config it ran with
    "launch_log": ".launch.log",  # its output
    "pruned": ".pruned",  # says that the output was deleted on purpose once used (a beta candidate not selected)
}


def sibling(path: Path, kind: str) -> Path:
    """``<path><suffix>`` for one of SIBLINGS, e.g. ``iter_1/policy.jsonl.shards``."""
    path = Path(path)
    return path.with_name(path.name + SIBLINGS[kind])


def stage_seed(base: int, name: str) -> int:
    """A per-stage seed, so that skipping a finished stage never shifts the random streams of later ones."""
    return (base * 1_000_003 + zlib.crc32(name.encode())) % (2**31 - 1)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that ``path`` holds either its old content or the new one, never a half-written file. The
    temporary file is named by process and thread: concurrent writers of one path (the beta candidates of one
    iteration writing their shared job data) each replace it whole, and the last one wins."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{path}: file not found. It should have been written by an earlier stage or given in the "
            "config; check the path, or delete the stage's marker under .stages/ to rebuild it."
        ) from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg}). Fix or delete the file.") from None


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, row)``; a bad line (not UTF-8, not JSON, not an object) raises a UserError that names
    ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{path}: file not found. Check the path in your config (it is resolved against the "
            f"directory you launched from, {Path.cwd()})."
        )
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(
                    f"{path}:{lineno}: not valid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}). Save the "
                    "file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or fix that line."
                ) from None
            if line.strip():
                yield lineno, _json_object(path, lineno, line)


def _json_object(path: Path, lineno: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(
            f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno}). Each line of a "
            "JSONL file must be one JSON object; fix or remove that line."
        ) from None
    if not isinstance(row, dict):
        raise UserError(
            f"{path}:{lineno}: expected a JSON object per line, got {type(row).__name__}. Wrap the line's fields in {{...}}."
        )
    return row


def read_jsonl(path: Path) -> list[dict]:
    return [row for _, row in iter_jsonl(path)]


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class StageRecord:
    name: str
    fingerprint: str
    seconds: float
    skipped: bool
    info: dict = field(default_factory=dict)
    compute: dict | None = None  # the model arithmetic it did (``synpo.compute``), when it ran a model
    outputs: dict[str, Path] = field(default_factory=dict)  # what it wrote, by name (``output_names``)

    def output(self, name: str) -> Path:
        """The path of the output called ``name`` (a bug, not a user error, when the stage has none)."""
        if name not in self.outputs:
            raise KeyError(f"stage {self.name} has no output {name!r}; it has {sorted(self.outputs)}")
        return self.outputs[name]


def output_names(outputs: list[Path] | dict[str, Path]) -> dict[str, Path]:
    """A stage's outputs by name: a dict as given, or each path under its file name without the extension
    (``iter_1/policy.jsonl`` -> ``policy``, ``iter_1/beta_2/model`` -> ``model``)."""
    if isinstance(outputs, dict):
        return {k: Path(v) for k, v in outputs.items()}
    named = {Path(o).name.split(".")[0]: Path(o) for o in outputs}
    if len(named) != len(outputs):
        raise ValueError(f"two outputs share a name: {[str(o) for o in outputs]}; name them with a dict")
    return named


def dependency_prints(deps: Iterable[StageRecord | str]) -> dict[str, str]:
    """What a stage reads, keyed by the upstream stage's name (a literal digest or label by itself), so the order in
    which a method lists its dependencies never changes a fingerprint."""
    return {d.name if isinstance(d, StageRecord) else f"literal:{d}": getattr(d, "fingerprint", str(d)) for d in deps}


class RunDir:
    """One run's directory: the paths of its layout, and its stage markers."""

    def __init__(self, root: Path):
        self.root = Path(root).absolute()
        problem = run_dir_problem(self.root)
        if problem:
            raise UserError(problem)
        self.markers = self.root / ".stages"

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    # --- the layout -------------------------------------------------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.path("config.yaml")

    @property
    def seed_files(self) -> tuple[Path, Path]:
        """``seed/train.jsonl`` and ``seed/val.jsonl``."""
        return self.path("seed", "train.jsonl"), self.path("seed", "val.jsonl")

    @property
    def results_file(self) -> Path:
        return self.path("results.json")

    def iter_dir(self, t: int) -> Path:
        return self.path(f"iter_{t}")

    def iter_file(self, t: int, *parts: str) -> Path:
        """A path inside ``iter_<t>/``."""
        return self.iter_dir(t).joinpath(*parts)

    @staticmethod
    def iter_stage(t: int, *parts: str) -> str:
        """A stage name inside iteration t, e.g. ``iter_1/policy``."""
        return "/".join([f"iter_{t}", *parts])

    @property
    def reference_answers(self) -> Path:
        """pi_0's validation answers: what every later validation compares against."""
        return self.iter_file(0, VAL_ANSWERS)

    def marker_path(self, name: str) -> Path:
        """``.stages/<name with / as __>.json``: the marker of a finished stage."""
        return self.markers / f"{name.replace('/', '__')}.json"

    def marker(self, name: str) -> dict | None:
        p = self.marker_path(name)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None  # a marker is written atomically; a corrupt one means "redo"

    def stage(
        self,
        name: str,
        settings: Any,
        outputs: list[Path] | dict[str, Path],
        fn: Callable[[], dict | None],
        deps: Iterable[StageRecord | str] = (),
        former: Iterable[Any] = (),
    ) -> StageRecord:
        """Run ``fn`` unless a finished stage with the same fingerprint is on disk.

        ``settings`` are what the stage's results depend on (its identity: never a speed-only setting, see
        ``synpo.schema.identity``). ``fn`` writes ``outputs`` (each through a temporary name; a list is named by
        ``output_names``) and may return a dict of facts to keep in the marker (counts, metrics; its ``compute``
        entry goes to ``StageRecord.compute``). ``deps`` are the records, or literal digests, of what the stage
        reads; their order does not matter. ``former`` are the settings an older synpo gave this same stage (a
        narrower identity): a finished stage whose marker has one of their fingerprints is kept and re-marked.
        """
        named = output_names(outputs)
        outputs = list(named.values())
        present = [Path(o).exists() or sibling(o, "pruned").is_file() for o in outputs]
        prints = dependency_prints(deps)
        fp = self._fingerprint(name, settings, prints)
        done = self.marker(name)
        if done and all(present) and done.get("fingerprint") != fp:
            if any(done.get("fingerprint") == self._fingerprint(name, s, prints) for s in former):
                log.info("stage %-28s finished under an older identity of its settings: kept, re-marked", name)
                done["fingerprint"] = fp
                write_json(self.marker_path(name), done)
        if done and done.get("fingerprint") == fp and all(present):
            log.info("stage %-28s done earlier (%.1fs), skipped", name, done.get("seconds", 0.0))
            info = done.get("info") or {}
            return StageRecord(name, fp, done.get("seconds", 0.0), True, info, done.get(COMPUTE), named)
        if done:
            log.info("stage %-28s inputs or settings changed: redoing it", name)
        _remove([*outputs, *(sibling(o, "pruned") for o in outputs), self.marker_path(name)])
        marker_path = self.marker_path(name)
        log.info("stage %-28s running", name)
        window = memory.start()
        t0 = time.perf_counter()
        try:
            info = fn() or {}
        finally:
            used = memory.finish(window)  # closes the window, also when fn raises
        compute = info.pop(COMPUTE, None)
        seconds = round(time.perf_counter() - t0, 3)
        missing = [str(o) for o in outputs if not Path(o).exists()]
        if missing:
            raise RuntimeError(f"stage {name} finished without writing {missing}: a bug in the stage")
        marker = {
            "fingerprint": fp,
            "seconds": seconds,
            "info": info,
            COMPUTE: compute,
            "memory": used,
            "finished": time.time(),
        }
        write_json(marker_path, marker)
        log.info("stage %-28s finished in %.1fs (peak RSS %.0f MiB)", name, seconds, used["peak_rss_mib"])
        return StageRecord(name, fp, seconds, False, info, compute, named)

    def _fingerprint(self, name: str, settings: Any, prints: dict[str, str]) -> str:
        # Paths inside the run directory count relative to it, so a moved run directory still resumes.
        key = {"stage": name, "settings": settings, "deps": prints}
        return fingerprint(json.dumps(key, sort_keys=True, default=str).replace(str(self.root), "<run>"))


def _remove(paths: Iterable[Path]) -> None:
    """Delete each of ``paths`` that exists, file or directory."""
    for p in map(Path, paths):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def prune(path: Path, why: str) -> None:
    """Delete a finished stage's output that nothing will read again (a beta candidate that was not selected), and
    leave ``<path>.pruned`` saying so: the stage stays finished (``RunDir.stage`` counts a pruned output as present),
    and the output is made again only if the stage itself is redone."""
    path = Path(path)
    write_json(sibling(path, "pruned"), {"why": why, "when": time.time()})
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def run_dir_problem(path: Path | str) -> str | None:
    """Why ``path`` cannot hold a run directory (a file, or a place this process cannot write), or None. It tries:
    the directory is made if missing, and a probe file is written and removed."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        return f"run_dir={str(path)!r} is a file, not a directory. Choose another run_dir=<path> (or name=<label>)."
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        return (
            f"run_dir={str(path)!r} cannot be written ({e.strerror or e}). Choose a writable run_dir=<path>, or fix "
            "the directory's permissions."
        )
    return None


def keep_only_shards_of(shard_dir: Path, settings: dict) -> None:
    """Clear ``shard_dir`` unless its shards were written for exactly ``settings``, then claim it for them: shards
    of an interrupted attempt are reused only by a rerun of the same request."""
    stamp = shard_dir / "settings.sha256"
    digest = fingerprint(settings)
    if shard_dir.is_dir() and not (stamp.is_file() and stamp.read_text(encoding="utf-8") == digest):
        shutil.rmtree(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stamp, digest)


def point_link(link: Path, target: Path) -> None:
    """Make ``link`` a relative symlink to ``target`` (e.g. ``iter_t/policy`` -> the selected model)."""
    link = Path(link)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(os.path.relpath(target, link.parent), link)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished directory into place atomically (a rename within the run directory)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
