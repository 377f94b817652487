"""An LLM judge over an OpenAI-compatible chat endpoint (``scorer=judge``): ``vllm serve`` or a hosted API.

Pairwise: each pair is judged twice, with the answers in both positions, and the two verdicts are averaged, which
cancels the judge's position bias. A verdict is +1 (the first-named answer of ``gaps``' pair is better), -1 or 0 (a
tie), so ``gap`` is in {-1, -0.5, 0, 0.5, 1}: 1 means a wins in both orders, 0.5 a win and a tie. The threshold
applies to that scale (conf/scorer/judge.yaml).

Robustness: timeouts per request, retries with backoff on connection errors, 429 and 5xx; an unparseable verdict is
asked again (at ``retry_temperature``, seeded) and counts as a tie once the retries are spent; the count is kept in
``stats``. The API key is read from the environment variable named by ``scorer.api_key_env`` and never appears in
config, logs or error messages. Judge outputs are untrusted text: they are matched by a bounded regex, never
evaluated.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor

from synpo.errors import UserError
from synpo.scoring.base import PairwiseScorer

log = logging.getLogger(__name__)

JUDGE_TEMPLATE = """Please act as an impartial judge and compare two answers to the user's question below. Judge \
which answer follows the instruction and answers the question better: correctness, helpfulness and format. Do not \
let the order of the answers or their length influence you.

[Question]
{question}

[Answer A]
{a}

[Answer B]
{b}

Reply with your verdict only: [[A]] if answer A is better, [[B]] if answer B is better, [[C]] for a tie."""

_BRACKETED = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_BARE = re.compile(r"^\W{0,3}(A|B|C|tie)\W{0,3}$", re.IGNORECASE)
_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


def parse_verdict(text: str) -> int | None:
    """+1 for A, -1 for B, 0 for a tie, None when the text holds no single clear verdict."""
    text = text[:4000]
    found = {m.upper() for m in _BRACKETED.findall(text)}
    if not found:
        m = _BARE.match(text.strip())
        found = {m.group(1).upper()} if m else set()
    if len(found) != 1:
        return None
    return {"A": 1, "B": -1, "C": 0, "TIE": 0}[found.pop()]


class JudgeScorer(PairwiseScorer):
    """A pairwise scorer: ``gaps(prompts, a, b)``, order-averaged verdicts in [-1, 1]."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        concurrency: int = 8,
        max_tokens: int = 16,
        retry_temperature: float = 0.7,
        seed: int = 0,
    ):
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        self.retry_temperature = retry_temperature
        self.seed = seed
        self.stats = {"requests": 0, "http_retries": 0, "parse_retries": 0, "unparsed": 0}
        self._lock = threading.Lock()
        if api_key_env and not os.environ.get(api_key_env):
            raise UserError(
                f"scorer.api_key_env={api_key_env!r}: that environment variable is not set. Export the judge API's "
                f"key as {api_key_env} (it is read from the environment only, never from config), or set "
                "scorer.api_key_env=null for a local server without authentication."
            )

    def accepts(self, prompt: str) -> bool:
        return bool(prompt.strip())

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def _post(self, body: dict) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            headers["Authorization"] = "Bearer " + os.environ[self.api_key_env]
        data = json.dumps(body).encode()
        problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._count("http_retries")
                time.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
            self._count("requests")
            try:
                req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            except ValueError as e:  # a URL urllib cannot use: no retry helps
                raise UserError(
                    f"scorer.endpoint: {self.url!r} is not a usable URL ({e}); give a base URL such as "
                    "http://127.0.0.1:8000/v1"
                ) from None
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    payload = json.loads(resp.read().decode("utf-8", errors="replace"))
                return str(payload["choices"][0]["message"]["content"] or "")
            except urllib.error.HTTPError as e:
                problem = f"HTTP {e.code} {e.reason}"
                if e.code not in _RETRY_STATUS:
                    break
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
                problem = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            except (ValueError, KeyError, IndexError, TypeError):
                problem = "a reply that is not an OpenAI chat completion"
        raise UserError(
            f"The judge endpoint {self.url} (model {self.model!r}) failed after {self.max_retries + 1} attempts: "
            f"{problem}. Check that the server is up (e.g. `vllm serve <model> --host 127.0.0.1`), that "
            "scorer.endpoint and scorer.name_or_path name it, and, for a hosted API, that the key in "
            f"{self.api_key_env or '(no key configured)'} is valid; raise scorer.timeout_s for slow servers."
        )

    def verdict(self, question: str, first: str, second: str) -> int:
        """The judge's verdict on (first, second): +1 first better, -1 second better, 0 tie or unparseable.

        The retries' seeds derive from the request's text, so a verdict does not depend on batching or sharding."""
        content = JUDGE_TEMPLATE.format(question=question, a=first, b=second)
        base = (self.seed * 1_000_003 + zlib.crc32(content.encode())) % (2**31 - 1)
        for attempt in range(self.max_retries + 1):
            body = {
                "model": self.model,
                "messages": [{"role": "user", "content": content}],
                "max_tokens": self.max_tokens,
                "temperature": 0.0 if attempt == 0 else self.retry_temperature,
                "seed": (base + attempt) % (2**31 - 1),
            }
            v = parse_verdict(self._post(body))
            if v is not None:
                return v
            self._count("parse_retries")
        self._count("unparsed")
        return 0

    def preferences(self, gaps: list[float], tie: float = 0.0) -> list[float]:
        """The order-averaged verdicts in [-1, 1] as preferences in [0, 1]: a split verdict keeps its half point
        (``tie`` does not apply)."""
        return [(float(g) + 1) / 2 for g in gaps]

    def gaps(self, prompts: list[str], a: list[str], b: list[str]) -> list[float]:
        """(verdict(a, b) - verdict(b, a)) / 2 per pair: both orders, so position bias cancels."""
        n = len(prompts)
        if not (len(a) == len(b) == n):
            raise ValueError("prompts, a and b must have the same length")

        def one(i: int) -> float:
            forward = self.verdict(prompts[i], a[i], b[i])
            backward = self.verdict(prompts[i], b[i], a[i])
            return (forward - backward) / 2

        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            out = list(pool.map(one, range(n)))
        log.info("judge: %d pairs, %s", n, self.stats)
        return out
