"""A training job's entry point for ``accelerate launch``: every rank reads the job file; rank 0 writes the result.

accelerate launch --config_file <run>/.../model.accelerate.yaml -m synpo.training.job <run>/.../model.job.json
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from synpo.artifacts import read_json, read_jsonl, write_json
from synpo.errors import UserError
from synpo.training import preemption
from synpo.training.common import HParams, process_rank
from synpo.training.launch import job_function


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m synpo.training.job <job.json>")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    job = read_json(Path(argv[0]))
    kwargs = dict(job["kwargs"])
    kwargs.update({key: read_jsonl(Path(path)) for key, path in job.get("files", {}).items()})
    kwargs["hp"] = HParams(**kwargs["hp"])
    started = time.time()
    preemption.install()
    try:
        result = job_function(job["kind"])(out_dir=Path(job["out_dir"]), **kwargs)
    except preemption.Preempted as e:
        e.exit()  # a rank has no earlier handler: exit 128 + n
    except UserError as e:  # something the user can fix: run.py reports the paragraph itself, not a traceback
        if process_rank() == 0:
            write_json(Path(job["result"]), {"user_error": str(e)})
        sys.exit(2)
    # Where and when it ran: concurrent beta candidates are checked against these.
    result.update(
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        slurm_step_id=os.environ.get("SLURM_STEP_ID"),  # set when srun started this node's launch
        started=started,
        finished=time.time(),
    )
    if process_rank() == 0:
        write_json(Path(job["result"]), result)


if __name__ == "__main__":
    main()
