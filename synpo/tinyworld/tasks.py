"""The tiny world's task families: procedurally generated instructions with exactly checkable answers.

Every task has three renderings of its answer:

- ``gold``: a full sentence that opens with the task's lead phrase and ends with a period. Seed answers are gold,
  like the GPT-4 Turbo answers of the paper's seed set.
- ``terse``: the bare content. Most of pi_0's SFT targets are terse, like the weaker UltraChat answers zephyr-sft
  was trained on. The gap between the two is what SynPO's improver can learn to close.
- a parse back from text (:func:`parse_prompt`), so that a synthetic prompt written by the model can be checked.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

NOUNS = (
    "apple", "river", "stone", "cloud", "tiger", "lamp", "bread", "chair", "grape", "horse",
    "ocean", "pencil", "rose", "snake", "table", "window", "zebra", "candle", "forest", "mango",
    "piano", "rocket", "sugar", "violin",
)  # fmt: skip
MAX_NUMBER = 99

FAMILIES = ("reverse", "sort", "add", "count", "uppercase", "largest")

# The lead phrase of each family's gold answer; the verifier rewards it as part of the answer's form.
LEADS = {
    "reverse": "The reversed words are:",
    "sort": "The sorted numbers are:",
    "add": "The sum of",
    "count": "The word",
    "uppercase": "The word in uppercase is",
    "largest": "The largest number is",
}

# Words of the prompts that carry no content; everything else in a prompt is a keyword.
STOPWORDS = frozenset(
    {"the", "words", "numbers", "number", "and", "in", "word", "letters", "of", "pick", "these", "a", "to", "all"}
)


@dataclass(frozen=True)
class Task:
    """One instance of a task family: ``args`` are words (reverse, count, uppercase) or integers."""

    family: str
    args: tuple

    @property
    def prompt(self) -> str:
        a = self.args
        if self.family == "reverse":
            return f"Reverse the words: {' '.join(a)}"
        if self.family == "sort":
            return f"Sort the numbers: {' '.join(map(str, a))}"
        if self.family == "add":
            return f"Add the numbers {a[0]} and {a[1]}."
        if self.family == "count":
            return f"Count the letters in the word {a[0]}."
        if self.family == "uppercase":
            return f"Uppercase the word {a[0]}."
        if self.family == "largest":
            return f"Pick the largest number: {' '.join(map(str, a))}"
        raise ValueError(f"unknown task family {self.family!r}; known: {FAMILIES}")

    def content(self) -> list[str]:
        """The answer's content as a list of tokens (one token for the single-value families)."""
        a = self.args
        if self.family == "reverse":
            return list(reversed(a))
        if self.family == "sort":
            return [str(n) for n in sorted(a)]
        if self.family == "add":
            return [str(a[0] + a[1])]
        if self.family == "count":
            return [str(len(a[0]))]
        if self.family == "uppercase":
            return [a[0].upper()]
        if self.family == "largest":
            return [str(max(a))]
        raise ValueError(f"unknown task family {self.family!r}")

    def terse(self) -> str:
        return " ".join(self.content())

    def gold(self) -> str:
        a, c = self.args, self.terse()
        if self.family == "add":
            return f"The sum of {a[0]} and {a[1]} is {c}."
        if self.family == "count":
            return f"The word {a[0]} has {c} letters."
        return f"{LEADS[self.family]} {c}."

    def keywords(self) -> list[str]:
        return prompt_keywords(self.prompt)


def prompt_keywords(prompt: str) -> list[str]:
    """Content words of a prompt, in order, without stopwords or duplicates: the task verb and its objects."""
    seen: list[str] = []
    for token in re.findall(r"[A-Za-z]+|\d+", prompt.lower()):
        if token not in STOPWORDS and token not in seen:
            seen.append(token)
    return seen


def keyword_pool() -> list[str]:
    """The world's vocabulary from which SynPO draws random keyword lists."""
    verbs = ["reverse", "sort", "add", "count", "uppercase", "largest"]
    return verbs + list(NOUNS) + [str(n) for n in range(MAX_NUMBER + 1)]


def keyword_corpus(n: int, seed: int, exclude: set[str], per_row: int = 3) -> list[list[str]]:
    """The world's analogue of the paper's keyword corpus (3 keywords per web paragraph): per fresh task (none of
    ``exclude``, round-robin over the families), ``per_row`` of its keywords drawn at random, padded with a keyword of
    another task where it has fewer (like the noise keyword of the generator's training examples). Drawn from text
    of the world, so its keywords follow the world's mix of task words, nouns and numbers."""
    rng = random.Random(seed)
    tasks = sample_distinct_tasks(rng, n, exclude)
    rows = []
    for task in tasks:
        own = task.keywords()
        words = rng.sample(own, min(per_row, len(own)))
        while len(words) < per_row:
            other = [w for w in rng.choice(tasks).keywords() if w not in words]
            if other:
                words.append(rng.choice(other))
        rng.shuffle(words)
        rows.append(words)
    return rows


def sample_task(rng: random.Random, family: str | None = None) -> Task:
    family = family or rng.choice(FAMILIES)
    if family == "reverse":
        return Task(family, tuple(rng.sample(NOUNS, rng.randint(2, 4))))
    if family == "sort":
        return Task(family, tuple(rng.sample(range(MAX_NUMBER + 1), rng.randint(3, 5))))
    if family == "add":
        return Task(family, (rng.randint(0, 49), rng.randint(0, 49)))
    if family in ("count", "uppercase"):
        return Task(family, (rng.choice(NOUNS),))
    if family == "largest":
        return Task(family, tuple(rng.sample(range(MAX_NUMBER + 1), rng.randint(3, 5))))
    raise ValueError(f"unknown task family {family!r}; known: {FAMILIES}")


def sample_distinct_tasks(rng: random.Random, n: int, exclude: set[str] = frozenset()) -> list[Task]:
    """``n`` tasks with distinct prompts, none in ``exclude``, round-robin over the families.

    Small families (count and uppercase hold 24 prompts each) drop out of the rotation once exhausted, so large
    requests are filled by the larger families.
    """
    from synpo.errors import UserError

    tasks: list[Task] = []
    seen = set(exclude)
    active = list(FAMILIES)
    misses = dict.fromkeys(FAMILIES, 0)
    while len(tasks) < n:
        if not active:
            raise UserError(
                f"cannot draw {n} distinct tiny-world tasks: the world holds fewer (after excluding "
                f"{len(exclude)}). Lower data.n_train or data.n_val."
            )
        family = active[len(tasks) % len(active)]
        task = sample_task(rng, family)
        if task.prompt in seen:
            misses[family] += 1
            if misses[family] > 2000:
                active.remove(family)
            continue
        misses[family] = 0
        seen.add(task.prompt)
        tasks.append(task)
    return tasks


_WORD = r"([a-z]+)"
_NUMS = r"(\d{1,3}(?: \d{1,3})*)"
_PATTERNS = {
    "reverse": re.compile(r"reverse the words: ([a-z]+(?: [a-z]+)*)"),
    "sort": re.compile(r"sort the numbers: " + _NUMS),
    "add": re.compile(r"add the numbers (\d{1,3}) and (\d{1,3})\.?"),
    "count": re.compile(r"count the letters in the word " + _WORD + r"\.?"),
    "uppercase": re.compile(r"uppercase the word " + _WORD + r"\.?"),
    "largest": re.compile(r"pick the largest number: " + _NUMS),
}
MAX_PROMPT_CHARS = 200


def parse_prompt(text: str) -> Task | None:
    """The task a prompt asks for, or None when the text is not a well-formed tiny-world prompt.

    Used for synthetic prompts, which are untrusted model output: only bounded regular expressions are applied.
    Objects must come from the world's vocabulary and list lengths from its ranges, so that the verifier can check
    the answer exactly.
    """
    if not isinstance(text, str) or len(text) > MAX_PROMPT_CHARS:
        return None
    s = " ".join(text.strip().split())
    for family, pattern in _PATTERNS.items():
        m = pattern.fullmatch(s.lower())
        if not m:
            continue
        if family == "reverse":
            words = tuple(m.group(1).split())
            ok = 2 <= len(words) <= 4 and all(w in NOUNS for w in words) and len(set(words)) == len(words)
            return Task(family, words) if ok else None
        if family in ("sort", "largest"):
            nums = tuple(int(x) for x in m.group(1).split())
            ok = 3 <= len(nums) <= 5 and all(n <= MAX_NUMBER for n in nums) and len(set(nums)) == len(nums)
            return Task(family, nums) if ok else None
        if family == "add":
            a, b = int(m.group(1)), int(m.group(2))
            return Task(family, (a, b)) if a <= MAX_NUMBER and b <= MAX_NUMBER else None
        word = m.group(1)
        return Task(family, (word,)) if word in NOUNS else None
    return None
