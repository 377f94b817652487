"""Exact, partial-credit verification of tiny-world answers.

score = 0.7 * content + 0.3 * form for an answer whose content is exactly right, and half of that for any other
(the verifier rewards content and quality together; docs/ARCHITECTURE.md, "The tiny world"). The halving is the
world's model of a real reward model: a wrong answer does not beat a right one on style. Without it a well-formed
answer with most of a list right (0.7 * 0.75 + 0.3 = 0.825) outscored the right answer said tersely (0.7), and 46 of
the 287 pairs SynPO kept in its first iteration preferred worse content for better form (experiments/LOG.md,
2026-12-01). Every right answer now scores at least 0.7 and every wrong one below 0.5; among right answers form
decides, among wrong ones partial content and form.

- content in [0, 1]: positional token accuracy for the list families; for the single-value families 1 when exact,
  partial credit when close (numbers) or right but wrongly cased (uppercase). A natural answer, as a real chat
  model writes it, is read too: a list answer is exactly right when its last run of the world's nouns or numbers
  is ("Sure! In reverse order: river, apple."), an uppercase answer when its last word in capitals is, and the
  single-number families read the last number ("27 + 21 = 48").
- form in [0, 1]: 2/3 for opening with the family's lead phrase, 1/3 for a clean answer: one sentence, ending in a
  period, without repeated n-grams.

Model text is untrusted: it is cut to a bounded length and read with bounded regular expressions only. Nothing is
evaluated, and no string can make the verifier raise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from synpo.text import repetition_ratio
from synpo.tinyworld.tasks import LEADS, NOUNS, Task

CONTENT_WEIGHT = 0.7
FORM_WEIGHT = 0.3
WRONG_FACTOR = 0.5  # a wrong answer's share of the score its content and form would earn if it were right
MAX_RESPONSE_CHARS = 400
_TOKEN = re.compile(r"[A-Za-z]+|\d{1,6}")
_INT = re.compile(r"\d{1,6}")
_ALPHA = re.compile(r"[A-Za-z]+")
_LIST_FAMILIES = ("reverse", "sort")


@dataclass(frozen=True)
class Verdict:
    score: float
    content: float
    form: float
    exact: bool  # the content is exactly right, whatever the form


def _is_object(token: str) -> bool:
    return token.isdigit() or token.lower() in NOUNS


def _last_run(tokens: list[str], in_kind) -> list[str]:
    """The last maximal run of tokens of the answer's kind ("and" inside a run is skipped): the list a natural
    answer ends with ("Here they are, in order: 3, 5 and 9."). Empty when any of the world's objects (a noun or a
    number) follows it: "rocket zebra 77" does not end with the list."""
    runs: list[list[str]] = [[]]
    for token in tokens:
        if in_kind(token):
            runs[-1].append(token)
        elif _is_object(token):
            runs.append([])
            runs.append([token])  # an object of the other kind: what follows it is no longer the same list
            runs.append([])
        elif not (runs[-1] and token.lower() == "and") and runs[-1]:
            runs.append([])
    last = next((r for r in reversed(runs) if r), [])
    return last if last and in_kind(last[0]) else []


def _natural_list(task: Task, tokens: list[str]) -> bool:
    """Whether a natural answer's last run of the world's nouns (reverse) or numbers (sort) is exactly right."""
    if task.family == "reverse":
        return [t.lower() for t in _last_run(tokens, lambda t: t.lower() in NOUNS)] == task.content()
    return _last_run(tokens, str.isdigit) == task.content()


def _content(task: Task, text: str) -> float:
    expected = task.content()
    lead = LEADS[task.family]
    body = text[len(lead) :] if text.startswith(lead) else text
    if task.family in _LIST_FAMILIES:
        predicted = _TOKEN.findall(body)
        if not predicted:
            return 0.0
        hits = sum(p == e for p, e in zip(predicted, expected, strict=False))
        if hits == len(predicted) == len(expected) or _natural_list(task, predicted):
            return 1.0
        return hits / max(len(predicted), len(expected))
    if task.family == "uppercase":
        words = _ALPHA.findall(body)
        if not words:
            return 0.0
        shouted = [w for w in words if len(w) > 1 and w.isupper()]  # "Sure! TIGER is the word in capitals."
        if words[-1] == expected[0] or (shouted and shouted[-1] == expected[0]):
            return 1.0
        return 0.4 if words[-1].upper() == expected[0] else 0.0
    numbers = _INT.findall(body)
    if not numbers:
        return 0.0
    predicted_n, target = int(numbers[-1]), int(expected[0])
    if predicted_n == target:
        return 1.0
    return 0.5 * max(0.0, 1.0 - abs(predicted_n - target) / (abs(target) + 1))


def _form(task: Task, text: str) -> float:
    lead = 2 / 3 if text.startswith(LEADS[task.family]) else 0.0
    clean = text.endswith(".") and text.count(".") == 1 and "\n" not in text and repetition_ratio(text) < 0.5
    return lead + (1 / 3 if clean else 0.0)


def verify(task: Task, response: object) -> Verdict:
    """Score ``response`` as an answer to ``task``. Never raises, whatever ``response`` holds."""
    if not isinstance(response, str):
        return Verdict(0.0, 0.0, 0.0, False)
    text = response[:MAX_RESPONSE_CHARS].strip()
    if not text:
        return Verdict(0.0, 0.0, 0.0, False)
    content = _content(task, text)
    form = _form(task, text)
    exact = content == 1.0
    score = (CONTENT_WEIGHT * content + FORM_WEIGHT * form) * (1.0 if exact else WRONG_FACTOR)
    return Verdict(round(score, 6), round(content, 6), round(form, 6), exact)
