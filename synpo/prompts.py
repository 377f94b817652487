"""The two SynPO templates and the parsing of the generator's output.

The wording paraphrases the paper's Fig. 3 (self-prompt generator: keywords in, ``<question>``/``<solution>`` out)
and Fig. 7 (response improver: question and draft in, refined answer out). The same templates serve the tiny world
and the 7B settings; only the models differ.
"""

from __future__ import annotations

import re

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


def generator_prompt(keywords: list[str]) -> str:
    return GENERATOR_TEMPLATE.format(keywords=", ".join(keywords))


def generator_target(question: str, solution: str) -> str:
    return f"<question>{question}</question> <solution>{solution}</solution>"


def improver_prompt(question: str, draft: str) -> str:
    return IMPROVER_TEMPLATE.format(question=question, draft=draft)


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
