"""Experiment tracking: one W&B run per Hydra job, one step per iteration; a no-op logger with the same interface.

The API key is read by wandb from the environment (WANDB_API_KEY) and never passes through our config or logs.
Without a key the run is offline under ``<run_dir>/wandb``; ``wandb sync <that dir>`` uploads it later.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from synpo.artifacts import atomic_write_text, fingerprint
from synpo.errors import UserError
from synpo.schema import spec

log = logging.getLogger(__name__)


@dataclass
class LoggerConfig:
    """Experiment tracking. The API key is read from WANDB_API_KEY only, never from config."""

    name: str = spec("wandb", "wandb, or none: a no-op tracker", choices=("wandb", "none"))
    project: str = spec("synpo", "the W&B project")
    entity: str | None = spec(None, "the W&B entity (team or user); null: the key's default")
    mode: str = spec(
        "auto", "auto: online if WANDB_API_KEY is set, else offline", choices=("auto", "offline", "online", "disabled")
    )
    tags: list[str] = spec(help="W&B run tags", factory=list)
    n_sample_pairs: int = spec(16, "rows of the sample-pairs table per iteration", ge=0)


_SECRET_KEY = re.compile(r"(^|_)(api_?key|token|secret|password)$", re.IGNORECASE)


def is_secret_key(name: str) -> bool:
    """Whether a config key names a secret (``api_key``, ``hf_token``, ...): such keys are refused and redacted."""
    return bool(_SECRET_KEY.search(str(name)))


def secret_problems(cfg: DictConfig) -> list[str]:
    """Config keys that name a secret and hold a value: the config is saved with the run, so they are refused."""
    return [
        f"{key}: secrets do not belong in the config (it is saved with the run); put the W&B key in the "
        "WANDB_API_KEY environment variable"
        for key in _secret_like_keys(OmegaConf.to_container(cfg, resolve=False))
    ]


def _secret_like_keys(node: Any, prefix: str = "") -> list[str]:
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if is_secret_key(k) and v:
                found.append(key)
            found += _secret_like_keys(v, key)
    return found


class NullTracker:
    """``logger=none``: accepts every call, records nothing."""

    def add_config(self, values: dict) -> None:
        pass

    def log_iteration(self, step: int, metrics: dict) -> None:
        pass

    def log_table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        pass

    def finish(self) -> None:
        pass


def wandb_mode(configured: str) -> str:
    """The W&B mode a run uses: the user's WANDB_MODE when they set one (it wins over ``auto``), else online with a
    key and offline without."""
    if configured != "auto":
        return configured
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if _has_key() else "offline"


def _has_key() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())


def logger_problems(cfg: DictConfig) -> list[str]:
    """W&B settings that would fail only once the run starts: checked before any work."""
    if cfg.logger.name == "none":
        return []
    mode = wandb_mode(cfg.logger.mode)
    if mode not in ("online", "offline", "disabled", "dryrun", "run"):
        return [f"WANDB_MODE={mode!r} in the environment is not a W&B mode; use online, offline or disabled"]
    if mode in ("online", "run") and not _has_key():
        return [
            f"W&B mode {mode!r} (logger.mode={cfg.logger.mode!r}) needs an API key: set WANDB_API_KEY (or run "
            "`wandb login`), or use logger.mode=offline (upload later with `wandb sync`) or logger=none"
        ]
    return []


class WandbTracker:
    """One W&B run per run directory: a resumed run continues the same W&B run (its id is kept in the run
    directory) and logs only the iterations that W&B does not have yet."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        try:
            import wandb
        except ImportError:
            raise UserError(
                "logger=wandb needs the wandb package, which is not installed. Install it with "
                "`pip install wandb`, or run with logger=none."
            ) from None
        self._wandb = wandb
        mode = wandb_mode(cfg.logger.mode)
        run_id, state_file, digest = self._run_id(cfg, Path(run_dir))
        try:
            self.run = wandb.init(
                project=cfg.logger.project,
                entity=cfg.logger.entity,
                name=cfg.name,
                id=run_id,
                resume="allow",
                dir=str(run_dir),
                mode=mode,
                tags=list(cfg.logger.tags),
                config=loggable_config(cfg),
                settings=wandb.Settings(x_disable_stats=True, console="off", silent=True),
            )
        except Exception as e:  # wandb raises its own errors for network, auth and settings problems
            raise UserError(
                f"W&B could not start (mode {mode!r}): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                ". Check WANDB_API_KEY and the network, or run with logger.mode=offline or logger=none."
            ) from None
        atomic_write_text(state_file, json.dumps({"id": run_id, "config": digest}))
        self._logged = self._steps_already_logged(run_dir, run_id)
        log.info("W&B run %s (%s) in %s", self.run.id, mode, run_dir / "wandb")

    @staticmethod
    def _run_id(cfg: DictConfig, run_dir: Path) -> tuple[str, Path, str]:
        """The W&B run id: the one this run directory started with, as long as the config is the same; a changed
        config (its logged history would no longer match results.json) starts a new W&B run."""
        state_file = run_dir / ".wandb_run.json"
        digest = fingerprint(loggable_config(cfg))
        try:
            previous = json.loads(state_file.read_text()) if state_file.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            previous = {}  # written atomically; a damaged file only costs continuity of the W&B run
        if previous.get("config") == digest and previous.get("id"):
            return previous["id"], state_file, digest
        if previous.get("id"):
            log.info("the config changed since W&B run %s: this attempt logs to a new W&B run", previous["id"])
        return uuid.uuid4().hex[:8], state_file, digest

    def _steps_already_logged(self, run_dir: Path, run_id: str) -> set[int]:
        """Steps an earlier attempt of this run recorded: read back from its offline files, or W&B's own count."""
        if self.run.offline:
            steps: set[int] = set()
            for f in offline_run_files(run_dir):
                if f.name == f"run-{run_id}.wandb" and f.parent.name != Path(self.run.dir).parent.name:
                    steps |= {int(r["_step"]) for r in read_offline_history(f)}
            return steps
        return set(range(int(self.run.step or 0)))

    def add_config(self, values: dict) -> None:
        """Facts known once the run's components exist (the generation backend's version) added to its config."""
        self.run.config.update(values, allow_val_change=True)

    def log_iteration(self, step: int, metrics: dict) -> None:
        if step not in self._logged:
            self.run.log(_flatten(metrics), step=step)

    def log_table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        if step not in self._logged:
            self.run.log({name: self._wandb.Table(columns=columns, data=rows)}, step=step)

    def finish(self) -> None:
        self.run.finish()


def make_tracker(cfg: DictConfig, run_dir: Path) -> NullTracker | WandbTracker:
    if cfg.logger.name == "none" or cfg.logger.mode == "disabled":
        return NullTracker()
    return WandbTracker(cfg, run_dir)


def loggable_config(cfg: DictConfig) -> dict:
    """The resolved config as a plain dict, without anything that looks like a secret."""
    return _scrub(OmegaConf.to_container(cfg, resolve=True))


def _scrub(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: ("<redacted>" if is_secret_key(k) else _scrub(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_scrub(v) for v in node]
    return node


def _flatten(metrics: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, (int, float)):  # bool is an int
            out[key] = v
    return out


# Reading an offline run back (the report, and a resumed run that must not log a step twice). wandb has no public
# reader of a ``.wandb`` file as of 0.31 (wandb/wandb#1308; a ``wandb.beta.LocalApi`` is proposed in #12745, not
# released), and ``wandb.Api`` needs a server. So the log's framing (LevelDB's: 32 KiB blocks of CRC'd chunks) is
# read here and each record is parsed with wandb's own protobuf class; replace both with LocalApi once it ships.
_BLOCK = 32 * 1024
_HEADER = 7  # crc32 (4 bytes), length (2), record type (1); the file itself opens with ":W&B" + magic + version


def iter_offline_records(path: Path) -> Iterator[bytes]:
    """The serialized protobuf records of a W&B ``.wandb`` file (a LevelDB-style log of 32 KiB blocks)."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise UserError(f"{path}: not a W&B run file (it does not start with ':W&B').")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left - _HEADER
            continue
        chunk = data[pos : pos + length]
        pos += length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
            pending = b""


def read_offline_history(path: Path) -> list[dict]:
    """The history rows of an offline W&B run file, each a dict with ``_step`` and the logged keys."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for raw in iter_offline_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") != "history":
            continue
        row: dict[str, Any] = {"_step": record.history.step.num}
        for item in record.history.item:
            key = item.key or "/".join(item.nested_key)
            row[key] = json.loads(item.value_json)
        rows.append(row)
    return rows


def offline_run_files(path: Path) -> list[Path]:
    """The offline W&B run files under a run directory (``wandb/offline-run-*``) or a ``wandb`` directory."""
    path = Path(path)
    return sorted(path.glob("wandb/offline-run-*/run-*.wandb")) + sorted(path.glob("offline-run-*/run-*.wandb"))
