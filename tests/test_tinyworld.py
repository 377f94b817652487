"""The tiny world: tasks, exact verification with partial credit, adversarial text, the tokenizer and model."""

import random
import string

import pytest

from synpo.tinyworld.tasks import FAMILIES, LEADS, Task, keyword_pool, parse_prompt, sample_distinct_tasks, sample_task
from synpo.tinyworld.verifier import verify


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_round_trips_and_gold_scores_one(family):
    rng = random.Random(0)
    for _ in range(50):
        task = sample_task(rng, family)
        assert parse_prompt(task.prompt) == task
        v = verify(task, task.gold())
        assert v.score == 1.0 and v.exact and v.form == 1.0
        t = verify(task, task.terse())
        assert t.exact and t.content == 1.0 and t.form == 0.0 and t.score == pytest.approx(0.7)


def test_partial_credit_by_hand():
    task = Task("sort", (5, 3, 9))  # content: 3 5 9
    # two of three positions right ("3 9 5" -> 3 matches; "5 9" wrong): 1/3 content, lead and clean form
    v = verify(task, "The sorted numbers are: 3 9 5.")
    assert v.content == pytest.approx(1 / 3) and v.form == pytest.approx(1.0)
    assert v.score == pytest.approx(0.5 * (0.7 / 3 + 0.3), abs=1e-6)  # wrong content: half of what it would earn
    add = Task("add", (10, 9))  # 19; answer 18 is off by one: 0.5 * (1 - 1/20)
    assert verify(add, "18").content == pytest.approx(0.5 * (1 - 1 / 20))
    upper = Task("uppercase", ("apple",))
    assert verify(upper, "apple").content == pytest.approx(0.4)
    # the lead phrase alone earns 2/3 of the form; a repeated answer loses the clean 1/3
    assert verify(add, "The sum of 10 and 9 is 19. 19.").form == pytest.approx(2 / 3)


def test_a_wrong_answer_never_beats_a_right_one_on_style():
    """The world's reward model: every exactly right answer (at least 0.7, terse) outscores every wrong one (at most
    0.5 * (0.7 * content + 0.3) < 0.5), however well formed; among wrong ones, more content still scores higher."""
    from synpo.tinyworld.build_sft import corrupt

    rng = random.Random(1)
    for _ in range(2000):
        task = sample_task(rng)
        right = verify(task, task.terse())
        wrong = verify(task, corrupt(task, rng))
        assert right.exact and right.score >= 0.7
        if not wrong.exact:
            assert wrong.score < 0.5 < right.score
    task = Task("sort", (5, 3, 9, 1))  # 1 3 5 9: three of four right in gold form vs all four right tersely
    assert verify(task, "The sorted numbers are: 1 3 5 8.").score < verify(task, "1 3 5 9").score
    assert verify(task, "1 3 5 8").score > verify(task, "1 3 9 8").score


def test_repetition_loses_form():
    task = Task("largest", (4, 17, 9))
    assert verify(task, "17 17 17 17.").form == 0.0


ADVERSARIAL = [
    "",
    " ",
    "\x00",
    "9" * 100_000,
    "-" * 5000,
    "The sorted numbers are:",
    "<question></question>",
    "__import__('os').system('echo pwned')",
    "eval('1+1')",
    "${jndi:ldap://x}",
    "\ud800",
    "🙂" * 300,
    "The sum of 1 and 2 is " + "9" * 5000 + ".",
    "1e309",
    "NaN",
    "inf",
    "-17",
    "0x1F",
    "\n\n\n.",
    "....",
    "The largest number is 17.\nThe largest number is 17.",
    "(" * 10_000,
    "[[[[" * 2000,
    "\\d+" * 100,
]


@pytest.mark.parametrize("family", FAMILIES)
def test_verifier_never_crashes_and_stays_in_range(family):
    rng = random.Random(1)
    task = sample_task(rng, family)
    texts = list(ADVERSARIAL)
    alphabet = string.printable + "àéü€🙂\u200b"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))) for _ in range(300)]
    texts += [None, 17, b"bytes", ["list"]]
    for text in texts:
        v = verify(task, text)
        assert 0.0 <= v.score <= 1.0 and 0.0 <= v.content <= 1.0 and 0.0 <= v.form <= 1.0


def test_never_evaluates_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    verify(Task("add", (1, 2)), "__import__('pathlib').Path('pwned').touch()")
    assert not (tmp_path / "pwned").exists()


def test_parse_prompt_rejects_off_world_and_oversized():
    assert parse_prompt("Reverse the words: apple apple") is None  # repeated word
    assert parse_prompt("Reverse the words: apple dragon") is None  # not in the vocabulary
    assert parse_prompt("Sort the numbers: 1 2") is None  # too short
    assert parse_prompt("Sort the numbers: 1 2 300") is None  # out of range
    assert parse_prompt(" Add  the numbers 3\n and 4.  ") == Task("add", (3, 4))  # whitespace is normalised
    assert parse_prompt("Add the numbers 3 and 4." + " " * 500) is None  # over the length bound
    assert parse_prompt("Add the numbers 3 and 4. " + "x" * 300) is None
    assert parse_prompt("Tell me a joke") is None


NATURAL_PROMPTS = [  # how a real chat model asks for the world's tasks
    ("Add 27 and 21.", Task("add", (27, 21))),
    ("What is 27 plus 21?", Task("add", (27, 21))),
    ("What is the sum of 27 and 21?", Task("add", (27, 21))),
    ("How many letters are in the word tiger?", Task("count", ("tiger",))),
    ("Write the word Tiger in capital letters.", Task("uppercase", ("tiger",))),
    ("Write these words in reverse order: apple, river, stone", Task("reverse", ("apple", "river", "stone"))),
    ("Sort these from smallest to largest: 3, 9, 5", Task("sort", (3, 9, 5))),
    ("Arrange 3, 9, 5 in increasing order.", Task("sort", (3, 9, 5))),
    ("Which is the biggest number: 3, 9 or 5?", Task("largest", (3, 9, 5))),
]
NOT_THE_WORLDS = [
    "Sort the numbers 3 9 5 and then pick the largest",  # two operations
    "Uppercase tiger and count its letters.",
    "Add 3 and 4 and 5",  # three numbers to add
    "Reverse the letters of the word tiger",  # one word's letters: not a task of the world
    "Count 3 5 9",  # numbers to a word family
    "Reverse the words: apple 3 river",  # objects of two kinds
    "What is 2.5 plus 3?",  # decimals
    "What is -3 plus 4?",
    "Add 3 and 4, then write a long story about a dragon who loves numbers and explain every step in detail",
]


@pytest.mark.parametrize("text,task", NATURAL_PROMPTS)
def test_natural_phrasings_of_a_task_are_judged(text, task):
    assert parse_prompt(text) == task
    assert verify(task, task.gold()).score == 1.0


@pytest.mark.parametrize("text", NOT_THE_WORLDS)
def test_requests_the_world_cannot_check_are_refused(text):
    assert parse_prompt(text) is None


def test_natural_answers_are_read_for_their_content():
    right = [
        (Task("reverse", ("apple", "river")), "Sure! In reverse order: river, apple."),
        (Task("sort", (3, 9, 5)), "Here they are, in order: 3, 5 and 9."),
        (Task("sort", (3, 9, 5)), "Sorting the 3 numbers gives 3 5 9"),
        (Task("uppercase", ("tiger",)), "Sure! TIGER is the word in capitals."),
        (Task("add", (27, 21)), "27 + 21 = 48"),
    ]
    for task, answer in right:
        v = verify(task, answer)
        assert v.exact and 0.7 <= v.score < 1.0, (answer, v)  # right content, not the gold form
    hedged = verify(Task("sort", (3, 9, 5)), "3 5 9 or maybe 9 5 3")  # only the last list counts
    assert not hedged.exact and hedged.score < 0.5
    for task, padded in [
        (Task("reverse", ("zebra", "rocket")), "The reversed words are: rocket zebra 77."),
        (Task("sort", (3, 9, 5)), "3 5 9 tiger"),
    ]:
        assert not verify(task, padded).exact, padded  # an object after the list: it is not the answer's end


def test_distinct_tasks_and_keywords():
    tasks = sample_distinct_tasks(random.Random(0), 120)
    assert len({t.prompt for t in tasks}) == 120
    assert {t.family for t in tasks} == set(FAMILIES)
    pool = set(keyword_pool())
    for t in tasks:
        assert set(t.keywords()) <= pool and len(t.keywords()) >= 2
    assert Task("add", (3, 4)).keywords() == ["add", "3", "4"]


def test_leads_open_the_gold_answers():
    rng = random.Random(2)
    for family in FAMILIES:
        assert sample_task(rng, family).gold().startswith(LEADS[family])


def test_shipped_checkpoint_loads_with_real_classes():
    from transformers import LlamaForCausalLM

    from synpo.modeling import load_causal_lm, load_tokenizer

    tok = load_tokenizer("builtin:tiny-sft")
    model = load_causal_lm("builtin:tiny-sft")
    assert isinstance(model, LlamaForCausalLM)
    assert model.config.head_dim == 64 and model.config.hidden_size // model.config.num_attention_heads == 64
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "Add the numbers 3 and 4."}], add_generation_prompt=True, tokenize=False
    )
    ids = tok(rendered, add_special_tokens=False).input_ids
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.decode(tok("Reverse the words: apple river").input_ids) == "Reverse the words: apple river"


def test_shipped_manifest_records_per_family_accuracy():
    import json

    from synpo.modeling import BUILTIN_MODELS

    manifest = json.loads((BUILTIN_MODELS["tiny-sft"] / "manifest.json").read_text())
    assert set(manifest["accuracy"]) == set(FAMILIES)
    assert "build_sft" in manifest["command"]


def test_the_harness_generation_task_checks_content_in_either_form():
    """tinyworld_gen's exact match (lm-eval's own metric with the task's settings) accepts the right content terse or
    in the gold sentence, and refuses wrong content in either form."""
    import yaml
    from lm_eval.api.metrics import exact_match_hf_evaluate

    from synpo.evaluation.harness import _GEN_YAML
    from synpo.tinyworld.build_sft import corrupt

    metric = yaml.safe_load(_GEN_YAML.format(data='"x"'))["metric_list"][0]
    settings = {k: metric[k] for k in ("regexes_to_ignore", "ignore_case", "ignore_punctuation")}
    rng = random.Random(3)
    for _ in range(300):
        task = sample_task(rng)
        for answer in (task.gold(), task.terse(), " " + task.gold()):
            assert exact_match_hf_evaluate([answer], [task.terse()], **settings)["exact_match"] == 1.0, answer
        wrong = corrupt(task, rng)
        if not verify(task, wrong).exact:
            assert exact_match_hf_evaluate([wrong], [task.terse()], **settings)["exact_match"] == 0.0, wrong
