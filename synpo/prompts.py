"""The two SynPO templates and the parsing of the generator's output.

The default wording paraphrases the paper's Fig. 3 (self-prompt generator: keywords in, ``<question>``/``<solution>``
out) and Fig. 7 (response improver: question and draft in, refined answer out); ``method.generator_template`` and
``method.improver_template`` replace it (a string, or ``file:<path>``), for example with the paper's exact text. The
improver's wording shapes the rewrites' length and detail, which PairRM and AlpacaEval reward, so it is a setting.
A template's text is part of every prompt it makes, and so of each stage's identity.
"""

from __future__ import annotations

import re
from pathlib import Path

from synpo.errors import UserError

GENERATOR_TEMPLATE = (
    "Write one new question that uses the keywords below, then answer it.\n"
    "Keywords: {keywords}\n"
    "Reply as <question>the question</question> <solution>the answer</solution>"
)

IMPROVER_TEMPLATE = (
    "Improve the draft answer to the question: make it correct, complete and well written.\n"
    "Question: {question}\n"
    "Draft answer: {draft}\n"
    "Reply with the improved answer only."
)

_QUESTION = re.compile(r"<question>(.*?)</question>", re.DOTALL)
MAX_QUESTION_CHARS = 4000


TEMPLATE_FIELDS = {
    "generator_template": ("keywords",),
    "improver_template": ("question", "draft"),
    "judge_template": ("question", "response"),
}
DEFAULTS = {"generator_template": GENERATOR_TEMPLATE, "improver_template": IMPROVER_TEMPLATE}


def template(key: str, value: str | None) -> str:
    """The text of ``method.<key>``: ours when ``value`` is null, a preset's by its name (the judge's ``rubric`` and
    ``short``), a file's with ``file:<path>``, else ``value`` itself; it must name each of its fields
    (``TEMPLATE_FIELDS``: ``{keywords}``; ``{question}`` and ``{draft}``; ``{question}`` and ``{response}``) and no
    other."""
    if value is None:
        return DEFAULTS[key]
    if value in PRESETS.get(key, {}):
        return PRESETS[key][value]
    text = value
    if value.startswith("file:"):
        try:
            text = Path(value.removeprefix("file:")).read_text(encoding="utf-8")
        except OSError as e:
            raise UserError(f"method.{key}={value!r}: cannot read the file ({e.strerror or e})") from None
    fields = set(re.findall(r"{(\w*)}", text))
    want = set(TEMPLATE_FIELDS[key])
    if fields != want:
        raise UserError(
            f"method.{key}: the template must name exactly the fields {sorted(want)} (in braces), and it names "
            f"{sorted(fields)}. Write literal braces as {{{{ and }}}}."
        )
    return text


def generator_prompt(keywords: list[str], text: str = GENERATOR_TEMPLATE) -> str:
    return text.format(keywords=", ".join(keywords))


def generator_target(question: str, solution: str) -> str:
    return f"<question>{question}</question> <solution>{solution}</solution>"


def improver_prompt(question: str, draft: str, text: str = IMPROVER_TEMPLATE) -> str:
    return text.format(question=question, draft=draft)


def parse_question(text: str) -> str | None:
    """The question inside the first ``<question>...</question>``, whitespace-normalised; None if absent or empty.

    Model output is untrusted: a bounded regular expression, no evaluation, and over-long questions are rejected.
    """
    if not isinstance(text, str):
        return None
    m = _QUESTION.search(text[: MAX_QUESTION_CHARS * 2])
    if not m:
        return None
    question = " ".join(m.group(1).split())
    if not question or len(question) > MAX_QUESTION_CHARS or "<question>" in question:
        return None
    return question


# --- Self-Instruct (the paper's Table 6 baseline) ---------------------------------------------------------------------

SELF_INSTRUCT_TEMPLATE = (
    "Here are some tasks:\n{examples}\nWrite one new task like these.\nReply as <question>the task</question>"
)
_TASK_PREFIX = re.compile(r"^(?:task\s*\d{0,3}\s*[:.)-]\s*)", re.IGNORECASE)


def self_instruct_prompt(examples: list[str]) -> str:
    """Self-Instruct's request (Wang et al. 2023, paraphrased): a few example tasks, then ask for a new one."""
    return SELF_INSTRUCT_TEMPLATE.format(examples="\n".join(f"Task {i + 1}: {x}" for i, x in enumerate(examples)))


def parse_instruction(text: str) -> str | None:
    """The new task in a Self-Instruct answer: inside ``<question>...</question>`` when there is one, else the first
    non-empty line without a ``Task N:`` label. Bounded, never evaluated; None when nothing usable is there."""
    if not isinstance(text, str):
        return None
    if (question := parse_question(text)) is not None:
        return question
    for line in text[: MAX_QUESTION_CHARS * 2].splitlines():
        line = " ".join(_TASK_PREFIX.sub("", line.strip()).split())
        if line:
            return line if len(line) <= MAX_QUESTION_CHARS and "<" not in line else None
    return None


# --- Self-Rewarding's LLM-as-a-judge (Yuan et al. 2024) ---------------------------------------------------------------

# The additive 5-point rubric of Yuan et al. 2024 (Fig. 2), paraphrased: one point per criterion met.
JUDGE_RUBRIC_TEMPLATE = """Review the user's question and the corresponding response using the additive 5-point \
scoring system described below. Points are accumulated based on the satisfaction of each criterion:

- Add 1 point if the response is relevant and provides some information related to the user's inquiry, even if it \
is incomplete or contains some irrelevant content.
- Add another point if the response addresses a substantial portion of the user's question, but does not \
completely resolve the query or provide a direct answer.
- Award a third point if the response answers the basic elements of the user's question in a useful way, regardless \
of whether it seems to have been written by an AI Assistant or if it has elements typically found in blogs or \
search results.
- Grant a fourth point if the response is clearly written from an AI Assistant's perspective, addressing the user's \
question directly and comprehensively, and is well-organized and helpful, even if there is slight room for \
improvement in clarity, conciseness or focus.
- Bestow a fifth point for a response that is impeccably tailored to the user's question by an AI Assistant, \
without extraneous information, reflecting expert knowledge, and demonstrating a high-quality, engaging, and \
insightful answer.

User: {question}
<response>{response}</response>

After examining the user's instruction and the response, briefly justify your total score, up to 100 words. \
Conclude with the score using the format: "Score: <total points>"."""

# The same judgement in a dozen words, for models whose context cannot hold the rubric (the tiny world's 512 tokens).
JUDGE_SHORT_TEMPLATE = "Rate the answer from 0 to 5.\nQuestion: {question}\nAnswer: {response}\nReply as Score: N"
JUDGE_TEMPLATES = {"rubric": JUDGE_RUBRIC_TEMPLATE, "short": JUDGE_SHORT_TEMPLATE}
_SCORE_LABEL = re.compile(r"score\s{0,3}[:=]", re.IGNORECASE)
_SCORE_VALUE = re.compile(r"\s{0,3}\**\s{0,3}([0-5](?:\.\d{1,3})?)(?!\.\d)(?!\w)")
MAX_JUDGEMENT_CHARS = 4000


PRESETS = {"judge_template": JUDGE_TEMPLATES}


def judge_prompt(text: str, question: str, response: str) -> str:
    """The judge's prompt for one answer, from the template's text (``template("judge_template", value)``)."""
    return text.format(question=question, response=response)


def judge_target(score: int) -> str:
    """What a judgement ends with: the format ``parse_judge_score`` reads."""
    return f"Score: {score}"


def parse_judge_score(text: str) -> float | None:
    """The score of a judgement: what follows its **last** ``Score:`` (a judge may quote the format before it
    concludes), a number in [0, 5]. Untrusted text: cut to a bounded length, bounded regular expressions, never
    evaluated; None when the last ``Score:`` is not followed by a score in range."""
    if not isinstance(text, str):
        return None
    text = text[-MAX_JUDGEMENT_CHARS:]
    labels = list(_SCORE_LABEL.finditer(text))
    if not labels:
        return None
    m = _SCORE_VALUE.match(text, labels[-1].end())
    return float(m.group(1)) if m else None
