"""Experiment tracking: one W&B run per Hydra job, one step per iteration; a no-op logger with the same interface.

The API key is read by wandb from the environment (WANDB_API_KEY) and never passes through our config or logs.
Without a key the run is offline under ``<run_dir>/wandb``; ``wandb sync <that dir>`` uploads it later.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from synpo.config import is_secret_key
from synpo.errors import UserError

log = logging.getLogger(__name__)


class NullTracker:
    """``logger=none``: accepts every call, records nothing."""

    def log_iteration(self, step: int, metrics: dict) -> None:
        pass

    def log_table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbTracker:
    def __init__(self, cfg: DictConfig, run_dir: Path):
        try:
            import wandb
        except ImportError:
            raise UserError(
                "logger=wandb needs the wandb package, which is not installed. Install it with "
                "`pip install wandb`, or run with logger=none."
            ) from None
        self._wandb = wandb
        mode = cfg.logger.mode
        if mode == "auto":
            mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
        self.run = wandb.init(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            name=cfg.name,
            dir=str(run_dir),
            mode=mode,
            tags=list(cfg.logger.tags),
            config=loggable_config(cfg),
            settings=wandb.Settings(x_disable_stats=True, console="off", silent=True),
        )
        log.info("W&B run %s (%s) in %s", self.run.id, mode, run_dir / "wandb")

    def log_iteration(self, step: int, metrics: dict) -> None:
        self.run.log(_flatten(metrics), step=step)

    def log_table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
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


def offline_run_files(run_dir: Path) -> list[Path]:
    return sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
