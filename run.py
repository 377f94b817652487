"""Entry point: compose the config, validate it, run the pipeline, return the sweep metric.

python run.py                                   # SynPO on the tiny world (runs/synpo_tiny_tinyworld)
python run.py experiment=tiny_synpo trainer.beta_grid=[2,6,10]
python run.py -m trainer.beta=2,4,6,8,10,12     # one run per beta (Hydra multirun)
"""

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

import synpo.config  # noqa: F401  (registers the config schemas with Hydra's ConfigStore)
from synpo.errors import JobUserError, UserError
from synpo.training import preemption


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from synpo import pipeline
    from synpo.config import validate

    preemption.install()  # SIGTERM/SIGUSR2 in training: checkpoint at the step's end, then stop (resumable)
    try:
        validate(cfg)
        return pipeline.run(cfg)
    except preemption.Preempted as e:
        logging.getLogger("synpo").warning("%s; run the same command again to resume from it", e)
        e.exit()
    except UserError as e:
        logging.getLogger("synpo").error("%s", e)
        if os.environ.get("SUBMITIT_EXECUTOR"):  # a sweep point: the message must reach the driver
            raise JobUserError(str(e)) from None
        sys.exit(2)


if __name__ == "__main__":
    main()
