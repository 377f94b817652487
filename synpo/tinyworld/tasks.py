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
    "apple",
    "river",
    "stone",
    "cloud",
    "tiger",
    "lamp",
    "bread",
    "chair",
    "grape",
    "horse",
    "ocean",
    "pencil",
    "rose",
    "snake",
    "table",
    "window",
    "zebra",
    "candle",
    "forest",
    "mango",
    "piano",
    "rocket",
    "sugar",
    "violin",
)
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


# Natural phrasings of each family's request: the cue words that name the operation. A prompt names exactly one
# operation and objects of one kind (the world's nouns or its numbers), so "Add 27 and 21.", "What is 27 plus 21?",
# "How many letters are in the word tiger?" and "Sort these from smallest to largest: 3, 9, 5" are all judged.
_CUES = {
    "reverse": re.compile(r"\brevers(?:e|ed|ing)\b|\bbackwards?\b|\bopposite order\b"),
    "sort": re.compile(
        r"\bsort(?:ed|ing)?\b|\bascending\b|\bincreasing\b|\barrange\b|\bin order\b|\bto (?:the )?<top>"
    ),
    "add": re.compile(r"\badd(?:ed|ing)?\b|\bsum\b|\bplus\b|\+|\btotal\b"),
    "count": re.compile(r"\bcount\b|\bhow many letters\b|\bnumber of letters\b|\blength of\b"),
    "uppercase": re.compile(r"\bupper ?case\b|\bcapital letters\b|\bcapitali[sz]e\b|\ball caps\b"),
    "largest": re.compile(r"\blargest\b|\bbiggest\b|\bgreatest\b|\bmaximum\b|\bhighest\b|\bmax\b"),
}
_ASCENDING = re.compile(r"\b(?:smallest|lowest|least) to (?:the )?(?:largest|highest|greatest|biggest)\b")
_NOUN_FAMILIES = ("reverse", "count", "uppercase")
_NUMBER_FAMILIES = ("sort", "add", "largest")
MAX_PROMPT_CHARS = 200
MAX_OTHER_WORDS = 14  # words beside the objects: a request, not a paragraph that also asks for something else


def _prompt_family(s: str, nouns: list[str], numbers: list[int]) -> str | None:
    """The one family whose operation ``s`` names and whose objects it holds; None when none or several fit."""
    s = _ASCENDING.sub(" to <top>", s)  # "from smallest to largest" asks for an order, not for the largest
    cued = [f for f, cue in _CUES.items() if cue.search(s)]
    if nouns and not numbers:
        fits = [f for f in cued if f in _NOUN_FAMILIES and (len(nouns) == 1) == (f != "reverse")]
    elif numbers and not nouns:
        fits = [f for f in cued if f in _NUMBER_FAMILIES and (len(numbers) == 2) == (f == "add")]
    else:
        return None
    return fits[0] if len(fits) == 1 else None


def parse_prompt(text: str) -> Task | None:
    """The task a prompt asks for, or None when the text is not a request the tiny world can check.

    The world's own templates parse, and so do natural phrasings of the same requests (``_CUES``): a real model's
    synthetic prompts are judged, not discarded. Used for synthetic prompts, which are untrusted model output: the
    text is bounded and read with bounded regular expressions only. Objects must come from the world's vocabulary
    and list lengths from its ranges (2-4 distinct nouns to reverse, 3-5 distinct numbers up to 99 to sort or pick
    from, two to add), so that the verifier can check the answer exactly.
    """
    if not isinstance(text, str) or len(text) > MAX_PROMPT_CHARS:
        return None
    s = " ".join(text.strip().split()).lower()
    if re.search(r"\d[.]\d|-\d", s):  # decimals and negative numbers are outside the world
        return None
    tokens = re.findall(r"[a-z]+|\d+", s)
    nouns = [t for t in tokens if t in NOUNS]
    numbers = [int(t) for t in tokens if t.isdigit()]
    if len(tokens) - len(nouns) - len(numbers) > MAX_OTHER_WORDS or any(n > MAX_NUMBER for n in numbers):
        return None
    family = _prompt_family(s, nouns, numbers)
    if family is None:
        return None
    if family == "reverse":
        ok = 2 <= len(nouns) <= 4 and len(set(nouns)) == len(nouns)
        return Task(family, tuple(nouns)) if ok else None
    if family in ("sort", "largest"):
        ok = 3 <= len(numbers) <= 5 and len(set(numbers)) == len(numbers)
        return Task(family, tuple(numbers)) if ok else None
    if family == "add":
        return Task(family, tuple(numbers))
    return Task(family, (nouns[0],))
