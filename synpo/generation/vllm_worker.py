"""The vLLM generation worker: ``python -m synpo.generation.vllm_worker <request.json>``.

It runs in the Python environment named by ``generator.python`` (vLLM may live in its own venv), so it imports only
the standard library and vLLM: no synpo module beyond this file, no omegaconf. The parent
(``synpo.generation.vllm.VLLMGenerator``) renders the chat template and sends token ids, so the worker never
re-tokenizes a string (which would add a second BOS under templates that already contain one).

Request (JSON): model, dtype, seed, tensor_parallel_size, gpu_memory_utilization, max_model_len,
trust_remote_code, sampling {n, temperature, top_p, max_tokens, seed, stop}, shard_size, shard_dir, prompt_token_ids,
optionally groups [{start, sampling}] (consecutive prompts from ``start`` on sampled each group's way, seeds counted
from the group's start). With data parallelism (``generator.data_parallel_size``) one worker per engine reads the same request and is told
its engine and the number of engines on its command line; it generates every ``engines``-th shard from its own.

Output: ``shard_dir/shard-00000.jsonl`` ... with rows ``{"index": i, "responses": [...], "finish_reasons": [...]}``; a shard is written
atomically once complete, so a crash loses at most the shard in progress and a rerun skips finished shards.
Progress goes to stdout as lines ``PROGRESS <done> <total>`` (this engine's prompts), and ``ALIVE`` while answers
finish between shards; a readable failure as ``ERROR <message>`` and exit 3.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _shard_file(shard_dir: Path, k: int) -> Path:
    return shard_dir / f"shard-{k:05d}.jsonl"


def _complete(path: Path, n_rows: int) -> bool:
    if not path.is_file():
        return False
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip()) == n_rows


def _write_atomic(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def say(line: str) -> None:
    """One line of the worker's protocol on stdout (the parent reads it as it comes)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def request_seed(base: int, index: int) -> int:
    """The seed of prompt ``index``: fixed per prompt, so the output does not depend on batching or on which
    shards a previous attempt finished."""
    return (base * 1_000_003 + index) % (2**31 - 1)


def _nvidia_smi(*query: str) -> list[list[str]]:
    import subprocess

    out = subprocess.run(
        ["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=60
    )
    return [[f.strip() for f in line.split(",")] for line in out.stdout.splitlines() if line.strip()]


def memory_problem(
    utilization: float, gpus: list[list[str]], apps: list[list[str]], visible: str | None
) -> str | None:
    """Why the GPUs this worker sees cannot give the engine ``utilization`` of their memory, naming the processes
    that hold it; None when they can. ``gpus``: nvidia-smi rows ``index, uuid, memory.used, memory.total`` (MiB);
    ``apps``: rows ``gpu_uuid, pid, process_name, used_memory``; ``visible``: CUDA_VISIBLE_DEVICES."""
    indices = None if not visible else {v.strip() for v in visible.split(",")}
    short = []
    for index, uuid, used, total in gpus:
        if indices is not None and index not in indices and uuid not in indices:
            continue
        free, need = float(total) - float(used), utilization * float(total)
        if free < need:
            holders = [f"pid {pid} ({name}, {mib} MiB)" for g, pid, name, mib in apps if g == uuid]
            short.append(
                f"GPU {index} has {free / 1024:.1f} GiB free of {float(total) / 1024:.1f} GiB, under the "
                f"{need / 1024:.1f} GiB that gpu_memory_utilization={utilization} asks; held by "
                + (", ".join(holders) if holders else "no process nvidia-smi can see")
            )
    if not short:
        return None
    return (
        "; ".join(short) + ". Stop what holds it (a process of an earlier run, another user's job), or lower "
        "generator.gpu_memory_utilization (a speed setting: finished stages are kept)"
    )


def _check_memory(utilization: float) -> str | None:
    """``memory_problem`` on this machine's GPUs; None without nvidia-smi (no NVIDIA GPU: vLLM on CPU)."""
    import shutil

    if shutil.which("nvidia-smi") is None:
        return None
    gpus = _nvidia_smi("--query-gpu=index,uuid,memory.used,memory.total")
    apps = _nvidia_smi("--query-compute-apps=gpu_uuid,pid,process_name,used_memory")
    return memory_problem(utilization, gpus, apps, os.environ.get("CUDA_VISIBLE_DEVICES"))


def _start_engine(req: dict, LLM):  # LLM: vLLM's class, imported in main
    """The vLLM engine for the request, once the GPUs it will see have its memory share free; None (after an
    ``ERROR`` line) when they have not."""
    if problem := _check_memory(float(req["gpu_memory_utilization"])):
        say(f"ERROR the engine cannot start: {problem}")
        return None
    t0 = time.time()
    llm = LLM(
        model=req["model"],
        tokenizer=req["model"],
        dtype=req["dtype"],
        seed=int(req["seed"]),
        tensor_parallel_size=int(req["tensor_parallel_size"]),
        gpu_memory_utilization=float(req["gpu_memory_utilization"]),
        max_model_len=req["max_model_len"],
        trust_remote_code=bool(req["trust_remote_code"]),
        enforce_eager=bool(req.get("enforce_eager", False)),
    )
    say(f"LOADED {time.time() - t0:.1f}")
    return llm


def engine_shards(n_prompts: int, size: int, engine: int = 0, engines: int = 1) -> list[tuple[int, int, int]]:
    """The shards ``(k, lo, hi)`` of ``n_prompts`` prompts that engine ``engine`` of ``engines`` generates: every
    ``engines``-th shard from its own index, so that each engine gets the same mix of the stage's prompts."""
    shards = [(k, lo, min(n_prompts, lo + size)) for k, lo in enumerate(range(0, n_prompts, size))]
    return [sh for sh in shards if sh[0] % engines == engine]


def _params(SamplingParams, s: dict, i: int):  # SamplingParams: vLLM's class
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        n=int(s["n"]),
        temperature=float(s["temperature"]),
        top_p=float(s["top_p"]) if s["temperature"] > 0 else 1.0,
        max_tokens=int(s["max_tokens"]),
        seed=request_seed(int(s["seed"]), i),
        stop=list(s.get("stop") or []) or None,
        include_stop_str_in_output=True,
        output_kind=RequestOutputKind.FINAL_ONLY,
    )


def _row(i: int, out, ids: list[int]) -> dict:
    return {
        "index": i,
        "responses": [c.text for c in out.outputs],
        "finish_reasons": ["length" if c.finish_reason == "length" else "stop" for c in out.outputs],
        "prompt_tokens": len(out.prompt_token_ids or ids),
        "tokens": [len(c.token_ids) for c in out.outputs],
    }


def generate_shards(llm, SamplingParams, req: dict, todo: list[tuple[int, int, int]], done: int) -> None:
    """Every prompt of the ``todo`` shards handed to the engine at once, so that vLLM batches continuously across
    the whole stage (a batch is never as narrow as a shard's slowest answer allows); each shard is written as soon
    as all its rows are finished, so a crash still loses at most the shards in progress."""
    ids, shard_dir, total = req["prompt_token_ids"], Path(req["shard_dir"]), int(req.get("engine_prompts", 0))
    engine = llm.llm_engine
    groups = req.get("groups") or [{"start": 0, "sampling": req["sampling"]}]
    shard_of, left, rows = {}, {}, {}
    for k, lo, hi in todo:
        left[k] = hi - lo
        for i in range(lo, hi):
            shard_of[i] = (k, lo, hi)
            g = max((g for g in groups if g["start"] <= i), key=lambda g: g["start"])  # the group prompt i is in
            params = _params(SamplingParams, g["sampling"], i - g["start"])
            engine.add_request(str(i), {"prompt_token_ids": ids[i]}, params)
    alive = time.time()
    while engine.has_unfinished_requests():
        for out in engine.step():
            if not out.finished:
                continue
            i = int(out.request_id.split("-")[0])  # our id; vLLM may add a suffix of its own internally
            rows[i] = _row(i, out, ids[i])
            k, lo, hi = shard_of[i]
            left[k] -= 1
            if left[k] == 0:
                _write_atomic(_shard_file(shard_dir, k), [rows.pop(j) for j in range(lo, hi)])
                done += hi - lo
                say(f"PROGRESS {done} {total}")
            elif time.time() - alive > 10:  # answers are finishing: the parent's stall watchdog hears so
                alive = time.time()
                say("ALIVE")
    if any(left.values()):
        raise RuntimeError(f"the engine stopped with {sum(left.values())} prompts unanswered")


def main(request_file: str, engine: int = 0, engines: int = 1) -> int:
    req = json.loads(Path(request_file).read_text(encoding="utf-8"))
    req["engine"], req["engines"] = engine, engines
    try:
        from vllm import LLM, SamplingParams
    except ImportError as e:
        say(f"ERROR vLLM cannot be imported in {sys.executable}: {e}")
        return 3

    shard_dir = Path(req["shard_dir"])
    shard_dir.mkdir(parents=True, exist_ok=True)
    mine = engine_shards(
        len(req["prompt_token_ids"]), int(req["shard_size"]), int(req.get("engine", 0)), int(req.get("engines", 1))
    )
    todo = [s for s in mine if not _complete(_shard_file(shard_dir, s[0]), s[2] - s[1])]
    req["engine_prompts"] = sum(hi - lo for _, lo, hi in mine)
    done = req["engine_prompts"] - sum(hi - lo for _, lo, hi in todo)
    say(f"PROGRESS {done} {req['engine_prompts']}")
    if not todo:
        return 0
    llm = _start_engine(req, LLM)
    if llm is None:
        return 3
    generate_shards(llm, SamplingParams, req, todo, done)
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 4):
        sys.stderr.write("usage: python -m synpo.generation.vllm_worker <request.json> [<engine> <engines>]\n")
        sys.exit(2)
    sys.exit(main(sys.argv[1], *(int(a) for a in sys.argv[2:])))
