"""Stages skip when done, redo when their settings or inputs change, and never leave half-written files."""

import json
import resource
import time

from synpo import memory
from synpo.artifacts import RunDir, read_jsonl, write_jsonl


def test_stage_skips_redoes_and_propagates(tmp_path):
    run = RunDir(tmp_path)
    calls = []

    def make(name, value):
        def fn():
            calls.append(name)
            write_jsonl(run.path(f"{name}.jsonl"), [{"v": value}])
            return {"value": value}

        return fn

    a = run.stage("a", {"x": 1}, [run.path("a.jsonl")], make("a", 1))
    run.stage("b", {}, [run.path("b.jsonl")], make("b", 2), [a])
    assert calls == ["a", "b"] and not a.skipped
    a2 = run.stage("a", {"x": 1}, [run.path("a.jsonl")], make("a", 1))
    b2 = run.stage("b", {}, [run.path("b.jsonl")], make("b", 2), [a2])
    assert calls == ["a", "b"] and a2.skipped and b2.skipped and b2.info == {"value": 2}
    a3 = run.stage("a", {"x": 2}, [run.path("a.jsonl")], make("a", 3))  # settings changed: redo a, then b
    run.stage("b", {}, [run.path("b.jsonl")], make("b", 2), [a3])
    assert calls == ["a", "b", "a", "b"]
    assert read_jsonl(run.path("a.jsonl")) == [{"v": 3}]


def test_a_record_names_its_outputs_and_the_order_of_deps_does_not_matter(tmp_path):
    run = RunDir(tmp_path)
    made = []

    def writer(*paths):
        def fn():
            made.append(paths)
            for p in paths:
                write_jsonl(p, [{"p": str(p)}])

        return fn

    a = run.stage("a", {}, [run.path("a.jsonl")], writer(run.path("a.jsonl")))
    b = run.stage("b", {}, [run.path("b.jsonl")], writer(run.path("b.jsonl")))
    pair = [run.path("scores.jsonl"), run.path("pairs.jsonl")]
    first = run.stage("c", {"k": 1}, pair, writer(*pair), [a, b, "pi_0"])
    assert first.output("scores") == pair[0] and first.output("pairs") == pair[1]
    again = run.stage("c", {"k": 1}, pair, writer(*pair), ["pi_0", b, a])  # listed in another order
    assert again.skipped and again.fingerprint == first.fingerprint and again.outputs == first.outputs
    assert len(made) == 3
    named = run.stage("d", {}, {"answers": run.path("x.jsonl")}, writer(run.path("x.jsonl")))
    assert named.output("answers") == run.path("x.jsonl")


def test_a_stage_finished_under_a_former_identity_is_kept_and_re_marked(tmp_path):
    """A narrower identity (an older synpo hashed more) keeps the finished stage and its record; another settings
    change still redoes it."""
    run = RunDir(tmp_path)
    calls = []

    def fn():
        calls.append(1)
        write_jsonl(run.path("v.jsonl"), [{"v": len(calls)}])
        return {"n": len(calls)}

    old = {"eval": {"sampled": True, "diversity": {"max_prompts": 2000}}}
    new = {"eval": {"sampled": True}}
    first = run.stage("v", old, [run.path("v.jsonl")], fn)
    kept = run.stage("v", new, [run.path("v.jsonl")], fn, former=[{"eval": {"sampled": False}}, old])
    assert calls == [1] and kept.skipped and kept.info == {"n": 1} and kept.fingerprint != first.fingerprint
    again = run.stage("v", new, [run.path("v.jsonl")], fn)  # re-marked: the new identity alone finds it now
    assert again.skipped and again.fingerprint == kept.fingerprint and calls == [1]
    other = run.stage("v", {"eval": {"sampled": False}}, [run.path("v.jsonl")], fn, former=[old])
    assert not other.skipped and calls == [1, 1]


def test_identity_leaves_out_speed_settings_only():
    from omegaconf import OmegaConf

    from synpo.generation.config import HFGeneratorConfig, VLLMGeneratorConfig
    from synpo.schema import identity, speed_fields
    from synpo.scoring.config import JudgeConfig, PairRMConfig

    g = OmegaConf.structured(VLLMGeneratorConfig(backend="vllm"))
    kept = identity(g)  # the node's own schema
    assert "gpu_memory_utilization" not in kept and "devices" not in kept and "shard_size" not in kept
    assert set(kept) == {"backend", "temperature", "top_p", "max_new_tokens"}
    g.shard_size, g.tensor_parallel_size = 7, 8
    assert identity(g) == kept
    g.temperature = 0.3
    assert identity(g) != kept
    hf = OmegaConf.structured(HFGeneratorConfig(batch_size=3))
    assert identity(hf) == identity(OmegaConf.structured(HFGeneratorConfig(batch_size=9)))
    assert {"batch_size", "shard_size"} <= set(speed_fields(PairRMConfig))
    assert {"timeout_s", "concurrency", "endpoint"} <= set(speed_fields(JudgeConfig))
    assert "dtype" not in speed_fields(PairRMConfig) and "threshold" not in speed_fields(JudgeConfig)


def test_missing_output_or_crash_means_redo(tmp_path):
    run = RunDir(tmp_path)
    out = run.path("o.jsonl")
    run.stage("s", {}, [out], lambda: write_jsonl(out, [{"a": 1}]) and None)
    out.unlink()
    rec = run.stage("s", {}, [out], lambda: write_jsonl(out, [{"a": 2}]) and None)
    assert not rec.skipped and read_jsonl(out) == [{"a": 2}]

    def crash():
        write_jsonl(out, [{"a": 3}])
        raise KeyboardInterrupt

    try:
        run.stage("s", {"changed": True}, [out], crash)
    except KeyboardInterrupt:
        pass
    assert run.marker("s") is None  # no marker: the next run redoes the stage
    assert not any(p.name.startswith(".") and "tmp" in p.name for p in tmp_path.iterdir())


def test_marker_records_fingerprint_and_seconds(tmp_path):
    run = RunDir(tmp_path)
    out = run.path("o.jsonl")
    run.stage("s", {"k": 1}, [out], lambda: {"n": write_jsonl(out, [{}])})
    marker = json.loads((tmp_path / ".stages" / "s.json").read_text())
    assert set(marker) >= {"fingerprint", "seconds", "info"} and marker["info"] == {"n": 1}


def test_shards_are_reused_only_by_the_same_request(tmp_path):
    from synpo.artifacts import keep_only_shards_of

    shards = tmp_path / "out.jsonl.shards"
    keep_only_shards_of(shards, {"temperature": 0.7})
    (shards / "shard-00000.jsonl").write_text('{"response": "a"}\n')
    keep_only_shards_of(shards, {"temperature": 0.7})  # a rerun of the same request keeps them
    assert (shards / "shard-00000.jsonl").is_file()
    keep_only_shards_of(shards, {"temperature": 1.0})  # another request must not read them
    assert not (shards / "shard-00000.jsonl").exists() and shards.is_dir()


def test_settling_frees_cyclic_garbage_before_freezing_what_lives():
    """``memory.settle`` (before every training job) collects first, so garbage in a reference cycle is freed, not
    frozen for the rest of the run; what is alive moves out of the collector's later passes."""
    import gc
    import weakref

    class Node:
        pass

    dead, alive = Node(), Node()
    dead.me, alive.me = dead, alive  # a cycle each: only the collector frees them
    gone = weakref.ref(dead)
    del dead
    try:
        memory.settle()
        assert gone() is None
        assert gc.get_freeze_count() > 0 and not any(o is alive for o in gc.get_objects())
    finally:
        gc.unfreeze()


def test_each_marker_records_the_peak_memory_of_its_own_stage(tmp_path):
    run = RunDir(tmp_path)
    mib = 2**20

    def alloc(n_mib, inner=None):
        def fn():
            block = bytearray(n_mib * mib)
            block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not only reserved
            time.sleep(10 * memory.INTERVAL_S)  # held for several samples
            del block
            if inner:
                inner()
            write_jsonl(run.path(f"{n_mib}.jsonl"), [{}])

        return fn

    def used(name):
        return json.loads((tmp_path / ".stages" / f"{name}.json").read_text())["memory"]

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run.stage("big", {}, [run.path("400.jsonl")], alloc(400))
    run.stage("small", {}, [run.path("1.jsonl")], alloc(1))
    big, small = used("big"), used("small")
    if big["peak_how"] == "process":  # no /proc: the lifetime peak
        assert small["peak_rss_mib"] >= big["peak_rss_mib"] >= 400
        return
    assert big["peak_rss_mib"] >= small["peak_rss_mib"] + 350  # the second stage's figure is its own
    inner = lambda: run.stage("inner", {}, [run.path("300.jsonl")], alloc(300))  # noqa: E731
    run.stage("outer", {}, [run.path("2.jsonl")], alloc(2, inner))
    assert used("inner")["peak_how"] == "sampled"  # below the 400 MiB of the first stage: seen by sampling
    assert used("outer")["peak_rss_mib"] >= used("inner")["peak_rss_mib"] >= small["peak_rss_mib"] + 250
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >= peak_before  # the process's own peak is untouched


def test_a_gguf_conversion_finished_by_another_process_meanwhile_is_kept(tmp_path, monkeypatch):
    """Two ranks (or two runs) may convert the same GGUF model at once: the one that finishes second must not
    remove the directory the first has put in place and may already be reading."""
    from synpo import gguf_models

    monkeypatch.setenv("SYNPO_CACHE", str(tmp_path))
    out = gguf_models.cache_dir("smollm2-135m")

    def convert_while_another_process_finishes(directory, file, tmp):
        tmp.mkdir(parents=True)
        (tmp / "config.json").write_text("{}")
        out.mkdir(parents=True)  # the other process's rename lands first
        (out / "config.json").write_text("{}")
        (out / "in-use").write_text("")

    monkeypatch.setattr(gguf_models, "gguf_source", lambda name: (tmp_path, "model.gguf"))
    monkeypatch.setattr(gguf_models, "_convert", convert_while_another_process_finishes)
    assert gguf_models.converted("smollm2-135m") == out
    assert (out / "in-use").is_file() and sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_a_pruned_output_keeps_its_stage_finished_until_the_stage_is_redone(tmp_path):
    from synpo.artifacts import prune, sibling

    run = RunDir(tmp_path)
    model = run.path("beta_2", "model")
    calls = []

    def train():
        calls.append(1)
        model.mkdir(parents=True)
        (model / "config.json").write_text("{}")

    run.stage("train", {"beta": 2}, [model], train)
    prune(model, "not selected")
    assert not model.exists() and sibling(model, "pruned").is_file()
    assert run.stage("train", {"beta": 2}, [model], train).skipped and len(calls) == 1  # still finished
    run.stage("train", {"beta": 3}, [model], train)  # its settings changed: redone, the marker gone
    assert len(calls) == 2 and model.is_dir() and not sibling(model, "pruned").exists()


def test_threads_writing_one_path_at_once_each_replace_it_whole(tmp_path):
    """The beta candidates of one iteration, trained in threads, write their shared job data to one
    content-addressed path at the same moment: every writer succeeds and the file is one writer's whole text."""
    from concurrent.futures import ThreadPoolExecutor

    from synpo.artifacts import atomic_write_text

    path = tmp_path / "shared.jsonl"
    texts = [f"{i}\n" * 20_000 for i in range(8)]

    def write(text):
        for _ in range(20):
            atomic_write_text(path, text)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, texts))  # re-raises a writer's error
    assert path.read_text() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["shared.jsonl"]  # no temporary file left behind
