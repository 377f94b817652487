"""Entry point: compose the config, validate it, run the pipeline, return the sweep metric.

python run.py                                   # SynPO on the tiny world (runs/synpo_tiny_tinyworld)
python run.py experiment=tiny_synpo trainer.beta_grid=[2,6,10]
python run.py -m trainer.beta=2,4,6,8,10,12     # one run per beta (Hydra multirun)
python run.py experiment=mistral_synpo --plan   # what the run will cost, before any work (synpo/plan.py)
"""

import sys

import hydra
from omegaconf import DictConfig

import synpo.config  # noqa: F401  (registers the config schemas with Hydra's ConfigStore)
from synpo.errors import UserError
from synpo.training import preemption


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from synpo import pipeline
    from synpo.config import validate

    preemption.install()  # SIGTERM/SIGUSR2 in training: checkpoint at the step's end, then stop (resumable)
    try:
        validate(cfg)
        return pipeline.run(cfg)
    except (preemption.Preempted, UserError) as e:
        e.exit()  # a stop at a step boundary (resumable) or bad input: exit code, or the driver gets the message


if __name__ == "__main__":
    if "--plan" in sys.argv[1:]:  # the plan composes the same config and prints its cost; nothing runs
        from synpo.plan import main as plan

        sys.exit(plan([a for a in sys.argv[1:] if a != "--plan"]))
    main()
