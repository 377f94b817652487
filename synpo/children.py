"""Child processes that must not outlive run.py: a forked training lane, the vLLM worker and its engine."""

from __future__ import annotations

import os
import signal


def die_with(parent: int) -> None:
    """In a child, just after it is made: have the kernel kill it when ``parent`` (run.py) dies, however it dies
    (Linux's ``PR_SET_PDEATHSIG``): a child left running after a ``kill -9`` of run.py would go on writing files that
    the rerun resumes from, or hold GPU memory that the rerun's engine needs. The kernel ties the signal to the
    thread that made the child, which must wait for it. Where prctl is missing, a child outlives a killed parent."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def kill_group(pid: int) -> None:
    """Kill the process group that ``pid`` leads (a child started with ``start_new_session``) and every process
    in it; nothing happens if it has already ended."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
