"""Resident memory of this process, per stage.

Linux keeps a process's peak resident set size (``VmHWM``) and lets the process reset it (``/proc/self/clear_refs``,
value 5), so each stage's marker records the peak *during that stage*, not the largest of the run so far. Windows may
nest or overlap (candidate trainings in threads): each reset first folds the peak so far into every open window, so
an outer stage's peak includes its inner stages'. Where the peak cannot be reset (not Linux, ``/proc`` read-only),
the peak is ``ru_maxrss``, the process's lifetime peak, and ``peak_since`` says so. Children (training jobs under
``accelerate launch``, the vLLM worker) are not counted: each is its own process.
"""

from __future__ import annotations

import itertools
import resource
import sys
import threading
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_lock = threading.Lock()
_open: dict[int, float] = {}  # window id -> the largest peak seen in it so far (MiB)
_ids = itertools.count()


def _status_mib(key: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def _fold() -> None:
    peak = _status_mib("VmHWM") or 0.0
    for k in _open:
        _open[k] = max(_open[k], peak)


def start() -> int | None:
    """Open a peak window; None where the peak cannot be reset (``finish`` then reports the lifetime peak)."""
    with _lock:
        _fold()
        try:
            _CLEAR_REFS.write_text("5")
        except OSError:
            return None
        window = next(_ids)
        _open[window] = 0.0
        return window


def finish(window: int | None) -> dict:
    """``{"peak_rss_mib", "rss_mib", "peak_since"}`` for a window from ``start``: the peak resident size during it
    (``peak_since: "stage"``) or over the process's life (``"process"``), and the resident size now."""
    with _lock:
        if window in _open:
            _fold()
            peak, since = _open.pop(window), "stage"
        else:
            scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kB on Linux
            peak, since = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, "process"
    rss = _status_mib("VmRSS")
    return {"peak_rss_mib": round(peak, 1), "rss_mib": None if rss is None else round(rss, 1), "peak_since": since}
