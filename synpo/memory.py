"""Resident memory of this process, per stage, without disturbing the process's own peak.

A background thread samples the resident size (``/proc/self/statm``) every ``INTERVAL_S`` into every open window.
At a window's end, if the process's lifetime peak (``VmHWM``) rose during it, that new peak is the window's exact
peak; otherwise the sampled maximum is (a peak shorter than the interval can then be missed, and the marker says
``"sampled"``). Nothing is reset, so ``ru_maxrss`` and ``/usr/bin/time -v`` still report the whole run's peak.
Windows may nest or overlap (candidate trainings in threads). Children (training jobs under ``accelerate launch``
or in lanes, the vLLM worker) are other processes and are not counted. Where ``/proc`` is missing (not Linux) the
figure is ``ru_maxrss``, the process's lifetime peak (``"process"``).
"""

from __future__ import annotations

import itertools
import os
import resource
import sys
import threading
from pathlib import Path

INTERVAL_S = 0.02
_PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 0.0
_lock = threading.Lock()
_open: dict[int, list[float]] = {}  # window id -> [lifetime peak at its start, largest sample in it]
_ids = itertools.count()
_sampler: threading.Thread | None = None


def _rss_mib() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE_MIB
    except (OSError, ValueError, IndexError):
        return None


def peak_mib() -> float | None:
    """This process's lifetime peak resident size (``VmHWM``), or None without ``/proc``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _sample_forever() -> None:
    event = threading.Event()
    while not event.wait(INTERVAL_S):
        if not _open:  # between stages: nothing to sample for
            continue
        rss = _rss_mib()
        with _lock:
            for w in _open.values():
                w[1] = max(w[1], rss or 0.0)


def start() -> int | None:
    """Open a window; None where this OS has no ``/proc`` (``finish`` then reports the lifetime peak)."""
    global _sampler
    hwm, rss = peak_mib(), _rss_mib()
    if hwm is None or rss is None:
        return None
    with _lock:
        if _sampler is None:
            _sampler = threading.Thread(target=_sample_forever, name="synpo-memory", daemon=True)
            _sampler.start()
        window = next(_ids)
        _open[window] = [hwm, rss]
        return window


def finish(window: int | None) -> dict:
    """``{"peak_rss_mib", "rss_mib", "peak_how"}`` for a window from ``start``: its peak resident size (``"exact"``:
    a new lifetime peak was set in it; ``"sampled"``: the largest sample; ``"process"``: the lifetime peak, where
    there is no ``/proc``) and the resident size now."""
    rss, hwm = _rss_mib(), peak_mib()
    with _lock:
        opened = _open.pop(window, None) if window is not None else None
    if opened is None or hwm is None:
        scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kB on Linux
        peak, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, "process"
    elif hwm > opened[0]:
        peak, how = hwm, "exact"
    else:
        peak, how = max(opened[1], rss or 0.0), "sampled"
    return {"peak_rss_mib": round(peak, 1), "rss_mib": None if rss is None else round(rss, 1), "peak_how": how}


def settle() -> None:
    """Collect cyclic garbage, then move every surviving object to the permanent generation (``gc.freeze``), so
    that later collections scan only what was made after: the garbage collector's full passes (``accelerate`` runs
    one at every training job's start, the generator one at every release) otherwise walk the hundreds of thousands
    of objects the imported libraries hold, 0.3 s or more each. Call it only where everything alive is long-lived
    (between stages, before a training job): a frozen object that later becomes cyclic garbage is never freed."""
    import gc

    gc.collect()
    gc.freeze()


def free_accelerator() -> None:
    """Collect what a component dropped and give the accelerator allocator's cached blocks back to the device, so
    that what starts next (a vLLM engine, a training job) finds its memory free. A no-op without CUDA."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class DeviceHeld:
    """A model that a component keeps in host memory and places on the accelerator only while a stage uses it (a
    device is held by the stage that uses it): ``acquire`` moves it there, ``release`` moves it back and empties the
    allocator's cache. ``held`` says whether it is placed now, on a machine without an accelerator too, so the
    hand-over between stages is tested on a CPU. The model is loaded once, when the component is built, so that a
    bad checkpoint fails before any heavy work."""

    def __init__(self, model, device: str = "cuda"):
        self.model = model
        self.held = False
        self.target = device  # where acquire places it when there is an accelerator

    def acquire(self):
        """The model, on the accelerator (when there is one) until ``release``."""
        if not self.held:
            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_available():
                self.model.to(self.target)
            self.held = True
        return self.model

    def replica(self, k: int) -> DeviceHeld:
        """The model for accelerator ``k`` (0: this one). With CUDA, a copy made for that device (one host copy at a
        time, freed when it moves there), to be dropped after the stage with ``drop``; without one, the same host
        model, which a replica only reads."""
        torch = sys.modules.get("torch")
        if k == 0 or torch is None or not torch.cuda.is_available():
            return self
        import copy

        with torch.no_grad():
            twin = DeviceHeld(copy.deepcopy(self.model), f"cuda:{k}")
            twin.acquire()
        return twin

    def drop(self) -> None:
        """A replica's end: its accelerator copy is freed (the original stays, released as usual)."""
        if self.target != "cuda":
            self.model, self.held = None, False
            free_accelerator()

    @property
    def device(self) -> str:
        return str(next(self.model.parameters()).device)

    def release(self) -> None:
        if self.held:
            self.model.to("cpu")
            self.held = False
            free_accelerator()


def saved_for_backward_bytes(model, input_ids) -> int:
    """Bytes autograd holds for the backward pass of ``model(input_ids)`` (its activations): every tensor the forward
    saves, each storage once, the model's own parameters left out. Exact, and the same on any device for the same
    kernels; what the plan's training-memory estimate (``synpo.cost.activation_bytes``) is checked against."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved.setdefault(storage.data_ptr(), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=input_ids, use_cache=False)
    return sum(saved.values())
