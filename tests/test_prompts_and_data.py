"""Templates and parsing round-trip; seed files fail with file:line errors; the generator's training examples."""

import pytest

from synpo.data import load_seed_file, split_seed
from synpo.errors import UserError
from synpo.keywords import generator_examples
from synpo.prompts import generator_prompt, generator_target, improver_prompt, parse_question
from synpo.text import repetition_ratio
from synpo.tinyworld.tasks import prompt_keywords


def test_generator_target_round_trips():
    q, s = "Sort the numbers: 5 3 9", "The sorted numbers are: 3 5 9."
    text = generator_target(q, s)
    assert parse_question(text) == q and f"<solution>{s}</solution>" in text
    assert (
        parse_question("noise <question>  Add the numbers 1\n and 2. </question> tail") == "Add the numbers 1 and 2."
    )


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "no tags",
        "<question></question>",
        "<question>   </question>",
        "<question>unclosed",
        None,
        "<question><question>x</question>",
    ],
)
def test_parse_question_rejects_bad_output(bad):
    assert parse_question(bad) is None


def test_templates_carry_their_inputs():
    assert "apple, sort, 7" in generator_prompt(["apple", "sort", "7"])
    p = improver_prompt("Uppercase the word rose.", "rose")
    assert "Uppercase the word rose." in p and "Draft answer: rose" in p


def test_repetition_ratio():
    assert repetition_ratio("19 19 19") == pytest.approx(2 / 3)
    assert repetition_ratio("The sorted numbers are: 3 5 9.") == 0.0
    long = " ".join(["the cat sat on the mat"] * 5)
    assert repetition_ratio(long) > 0.5
    assert repetition_ratio("") == 0.0


def test_generator_examples_use_two_own_keywords_and_one_noise():
    rows = [
        {"prompt": "Sort the numbers: 5 3 9", "answer": "a"},
        {"prompt": "Uppercase the word rose.", "answer": "b"},
        {"prompt": "Add the numbers 12 and 7.", "answer": "c"},
    ]
    examples = generator_examples(rows, prompt_keywords, seed=0)
    assert len(examples) == 3
    for row, ex in zip(rows, examples, strict=True):
        listed = ex["prompt"].split("Keywords: ")[1].split("\n")[0].split(", ")
        own = set(prompt_keywords(row["prompt"]))
        assert len(listed) == 3 and len(own & set(listed)) == 2
        assert parse_question(ex["completion"]) == row["prompt"]


def test_seed_file_errors_name_file_and_line(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(UserError, match="nope.jsonl: file not found"):
        load_seed_file(missing)
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"prompt": "a", "answer": "b"}\n{"prompt": "a", \n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: not valid JSON"):
        load_seed_file(bad_json)
    missing_field = tmp_path / "fields.jsonl"
    missing_field.write_text('{"prompt": "a", "answer": "b"}\n\n{"prompt": "c"}\n[1, 2]\n')
    with pytest.raises(UserError, match=r"fields.jsonl:4: expected a JSON object"):
        load_seed_file(missing_field)
    missing_field.write_text('{"prompt": "a", "answer": "b"}\n\n{"prompt": "c"}\n{"answer": 3}\n')
    with pytest.raises(UserError) as e:
        load_seed_file(missing_field)
    assert "fields.jsonl:3" in str(e.value) and "fields.jsonl:4" in str(e.value) and "2 bad row(s)" in str(e.value)


def test_split_is_deterministic_and_disjoint():
    rows = [{"prompt": f"p{i}", "answer": "a"} for i in range(50)]
    train, val = split_seed(rows, 10, seed=3)
    assert (train, val) == split_seed(rows, 10, seed=3)
    assert len(val) == 10 and not {r["prompt"] for r in train} & {r["prompt"] for r in val}
    with pytest.raises(UserError, match="data.n_val=50"):
        split_seed(rows, 50, seed=0)


def test_content_words_drop_stopwords_short_words_and_names():
    from synpo.keywords import content_words

    text = "Yesterday Alice planted tomatoes in the garden. Gardens need water and the sunlight of June."
    assert content_words(text) == [
        "yesterday",
        "planted",
        "tomatoes",
        "garden",
        "gardens",
        "need",
        "water",
        "sunlight",
    ]


def test_corpus_keyword_rows_take_three_per_paragraph(tmp_path):
    from synpo.keywords import content_words, corpus_keyword_rows

    corpus = tmp_path / "web.txt"
    paragraphs = [
        "Volcanic soil holds minerals that farmers value for vineyards.",
        "Short one.",
        "Bridges span rivers; engineers test steel cables under heavy load.",
    ]
    corpus.write_text("\n\n".join(paragraphs))
    rows = corpus_keyword_rows(corpus, seed=0)
    assert len(rows) == 2  # "Short one." has too few content words
    for row, paragraph in zip(rows, [paragraphs[0], paragraphs[2]], strict=True):
        assert len(row["keywords"]) == 3 and set(row["keywords"]) <= set(content_words(paragraph))
    assert rows == corpus_keyword_rows(corpus, seed=0)
    with pytest.raises(UserError, match="file not found"):
        corpus_keyword_rows(tmp_path / "missing.txt", seed=0)


def test_templates_are_settings_with_their_fields_checked(tmp_path, composed):
    """The paper's exact wording can replace ours, from the command line or a file; a template that loses a field is
    refused before any work."""
    import pytest

    from synpo.config import collect_problems
    from synpo.errors import UserError
    from synpo.prompts import IMPROVER_TEMPLATE, improver_prompt, template

    assert template("improver_template", None) == IMPROVER_TEMPLATE
    mine = "Refine this. Q: {question} A: {draft}"
    assert improver_prompt("2+2?", "5", template("improver_template", mine)) == "Refine this. Q: 2+2? A: 5"
    f = tmp_path / "improver.txt"
    f.write_text("From the paper:\n{question}\n---\n{draft}\n")
    assert template("improver_template", f"file:{f}").startswith("From the paper:")
    with pytest.raises(UserError, match=r"must name exactly the fields \['draft', 'question'\]"):
        template("improver_template", "Improve: {question}")
    problems = collect_problems(composed(["method.generator_template=Keywords only"]), read_files=False)
    assert any("method.generator_template" in p and "['keywords']" in p for p in problems)
    problems = collect_problems(composed([f"method.improver_template=file:{tmp_path}/none.txt"]), read_files=False)
    assert any("cannot read the file" in p for p in problems)
    # Self-Rewarding's judge: the presets by name, or the user's rubric (e.g. the paper's exact text) from a file
    from synpo.prompts import JUDGE_RUBRIC_TEMPLATE, judge_prompt

    assert template("judge_template", "rubric") == JUDGE_RUBRIC_TEMPLATE
    rubric = tmp_path / "rubric.txt"
    rubric.write_text("Score 0-5.\nQ: {question}\nA: {response}\nScore: N")
    assert (
        judge_prompt(template("judge_template", f"file:{rubric}"), "2+2?", "4")
        == "Score 0-5.\nQ: 2+2?\nA: 4\nScore: N"
    )
    lost = tmp_path / "lost.txt"
    lost.write_text("Rate {question} only")
    judged = composed(["method=self_rewarding", f"method.judge_template=file:{lost}"])
    assert any("['question', 'response']" in p for p in collect_problems(judged, read_files=False))
