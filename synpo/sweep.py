"""Every point of a multirun sweep is composed and validated in the driver, before any job is launched or queued:
a bad value in the last point of a SLURM sweep is reported within seconds, not after the first points ran.

Registered in conf/config.yaml as a Hydra callback (``hydra.callbacks.validate_sweep``); it expands the sweep's
overrides the way Hydra's basic sweeper does, composes each job's config and runs ``validate`` on it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from synpo.config import validate
from synpo.errors import UserError

log = logging.getLogger(__name__)


def sweep_points(config: DictConfig) -> list[list[str]]:
    """The override list of every job the basic sweeper will launch for this multirun config."""
    # Private, on purpose: Hydra has no public API that expands a multirun's overrides into its jobs, and this is the
    # function its basic sweeper (and so submitit's launches) uses, so the points validated here are exactly the
    # points launched. setup.cfg pins hydra-core below 1.4; tests/test_sweeps.py fails if it moves.
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    loader = GlobalHydra.instance().hydra.config_loader
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(
        OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    )
    return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def point_problems(config: DictConfig) -> list[str]:
    """One paragraph per sweep point whose config does not validate."""
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().hydra.config_loader
    problems = []
    for job in sweep_points(config):
        cfg = loader.load_sweep_config(master_config=config, sweep_overrides=job)
        with open_dict(cfg):
            del cfg["hydra"]
        try:
            validate(cfg)
        except UserError as e:
            problems.append(f"sweep point [{' '.join(job)}]: {e}")
    return problems


class ValidateSweepPoints(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        problems = point_problems(config)
        if problems:
            log.error(
                "%d sweep point(s) do not validate; nothing was launched.\n%s", len(problems), "\n".join(problems)
            )
            sys.exit(2)
