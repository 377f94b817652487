"""Exports round-trip with their readers; a local lm-eval task runs offline on the tiny model through our config;
the evaluation groups of a micro run land in results.json and W&B, and a crash during evaluation resumes without
regenerating answers."""

import json

import pytest
from conftest import compose

from synpo.config import validate
from synpo.errors import UserError
from synpo.evaluation import exports
from synpo.evaluation.harness import run_suite
from synpo.evaluation.winrate import alpaca_preference
from synpo.tracking import offline_run_files, read_offline_history

QUESTIONS = ["Sort the numbers: 3 1 2", "Reverse the words: red blue", "Add the numbers 2 and 3."]
ANSWERS = ["1 2 3", "blue red", "5"]


def test_alpaca_eval_round_trip(tmp_path):
    out = tmp_path / "model_outputs.json"
    exports.write_alpaca_eval_outputs(out, "m", QUESTIONS, ANSWERS)
    rows = json.loads(out.read_text())
    assert rows[0] == {"instruction": QUESTIONS[0], "output": "1 2 3", "generator": "m", "dataset": "synpo"}
    assert exports.read_alpaca_eval_questions(out)[0] == QUESTIONS
    # What alpaca_eval writes after judging them: the model wins, loses, ties.
    annotations = [
        {
            "instruction": r["instruction"],
            "output_1": "ref " * (i + 1),
            "generator_1": "gpt4",
            "output_2": r["output"],
            "generator_2": r["generator"],
            "annotator": "weighted_alpaca_eval_gpt4_turbo",
            "preference": p,
        }
        for i, (r, p) in enumerate(zip(rows, [2.0, 1.0, 1.5], strict=True))
    ]
    (tmp_path / "annotations.json").write_text(json.dumps(annotations))
    got = exports.read_alpaca_eval_annotations(tmp_path / "annotations.json", n_boot=0)
    assert got["alpaca_win_rate"] == pytest.approx(50.0) and got["alpaca_n_total"] == 3
    assert "alpaca_length_controlled_winrate" in got
    assert alpaca_preference(1.0) == 2.0


def _answer_turns(path) -> dict:
    """question_id -> answer turns, read as the official tools read a model_answer file."""
    out = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        out[row["question_id"]] = [t["content"] if isinstance(t, dict) else t for t in row["choices"][0]["turns"]]
    return out


def test_arena_hard_round_trip(tmp_path):
    answers = tmp_path / "model_answer" / "m.jsonl"
    exports.write_model_answers(answers, "m", ["q1", "q2"], [["a1"], ["a2"]], arena_hard=True)
    row = json.loads(answers.read_text().splitlines()[0])
    assert row["choices"][0]["turns"][0] == {"content": "a1", "token_len": 1} and row["model_id"] == "m"
    assert _answer_turns(answers) == {"q1": ["a1"], "q2": ["a2"]}
    judgments = tmp_path / "model_judgment" / "gpt-4-1106-preview" / "m.jsonl"
    judgments.parent.mkdir(parents=True)
    # q1: game 1 (A = baseline) B>>A, game 2 (A = model) A>B; q2: game 1 A>B, game 2 A=B.
    lines = [
        {"question_id": "q1", "model": "m", "judge": "gpt-4", "games": [{"score": "B>>A"}, {"score": "A>B"}]},
        {"question_id": "q2", "model": "m", "judge": "gpt-4", "games": [{"score": "A>B"}, {"score": "A=B"}]},
    ]
    judgments.write_text("\n".join(json.dumps(x) for x in lines))
    got = exports.read_arena_hard_judgments(judgments)
    # The model's preferences: 1 x3 (strong), 1, 0, 0.5 -> 4.5 / 6
    assert got["arena_win_rate"] == pytest.approx(100 * 4.5 / 6) and got["arena_questions"] == 2


def test_mt_bench_round_trip(tmp_path):
    questions = tmp_path / "question.jsonl"
    questions.write_text(
        json.dumps({"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Make it shorter."]}) + "\n"
    )
    ids, turns = exports.read_questions(questions, arena_hard=False)
    assert ids == [81] and turns == [["Write a poem.", "Make it shorter."]]
    answers = tmp_path / "model_answer" / "m.jsonl"
    exports.write_model_answers(answers, "m", ids, [["long poem", "short poem"]], arena_hard=False)
    assert _answer_turns(answers) == {81: ["long poem", "short poem"]}
    judgments = tmp_path / "gpt-4_single.jsonl"
    rows = [
        {"question_id": 81, "model": "m", "judge": ["gpt-4", "single-v1"], "score": 8, "turn": 1},
        {"question_id": 81, "model": "m", "judge": ["gpt-4", "single-v1-multi-turn"], "score": 5, "turn": 2},
        {"question_id": 82, "model": "m", "judge": ["gpt-4", "single-v1"], "score": -1, "turn": 1},  # no rating
        {"question_id": 81, "model": "other", "judge": ["gpt-4", "single-v1"], "score": 1, "turn": 1},
    ]
    judgments.write_text("\n".join(json.dumps(r) for r in rows))
    assert exports.read_mt_bench_judgments(judgments, "m") == {
        "mt_bench_turn_1": 8.0,
        "mt_bench_turn_2": 5.0,
        "mt_bench_score": 6.5,
    }


def test_bad_judgment_files_name_the_line(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text(json.dumps({"question_id": 1, "games": [{"score": "A>B"}]}) + "\n")
    with pytest.raises(UserError, match=r"m.jsonl:1: an Arena-Hard judgment needs 'games' with two games"):
        exports.read_arena_hard_judgments(f)


def test_local_lm_eval_tasks_run_offline_through_the_config(tmp_path):
    """eval=tinyharness: a multiple-choice and a generation task, local YAML over local JSONL, one code path; in a
    sweep point's run directory too, whose name holds glob characters (datasets globs its data files)."""
    cfg = compose(["eval=tinyharness"])
    validate(cfg)
    suite = cfg.eval.lm_eval.suites.tinyworld
    tasks = [dict(t) for t in suite.tasks]
    work = tmp_path / "eval=[validation,tinyharness],seed=0*?"
    got = run_suite("builtin:tiny-sft", tasks, work, apply_chat_template=suite.apply_chat_template, limit=16)
    assert set(got) == {"tinyworld_mc", "tinyworld_gen", "average"}
    assert 0.25 < got["tinyworld_mc"] <= 1.0  # above chance (1 in 4): the SFT model knows the gold form
    assert 0.0 <= got["tinyworld_gen"] <= 1.0
    assert (work / "tinyworld_tasks" / "tinyworld_mc.yaml").is_file()


def test_a_group_task_is_averaged_over_its_subtasks_when_asked(tmp_path):
    """``average: subtasks`` (the leaderboard's MMLU: the mean of its subjects) against lm-eval's own group value
    (weighted by size), on a local group of two multiple-choice tasks of 4 and 12 questions."""
    from synpo.evaluation.harness import _MC_YAML, write_tinyworld_tasks

    rows = [
        json.loads(x)
        for x in (write_tinyworld_tasks(tmp_path / "src") / "tinyworld_mc.jsonl").read_text().split("\n")
        if x
    ]
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    for name, part in (("pair_a", rows[:4]), ("pair_b", rows[4:16])):
        (tasks_dir / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
        data = json.dumps(str(tasks_dir / f"{name}.jsonl"))
        (tasks_dir / f"{name}.yaml").write_text(_MC_YAML.replace("tinyworld_mc", name).format(data=data))
    (tasks_dir / "pair.yaml").write_text(
        "group: pair\ntask: [pair_a, pair_b]\naggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\n"
    )

    def run(tasks):
        return run_suite("builtin:tiny-sft", tasks, tmp_path / "work", include_path=str(tasks_dir))

    each = run([{"task": n, "num_fewshot": 0, "metric": "acc,none"} for n in ("pair_a", "pair_b")])
    mean = run([{"task": "pair", "num_fewshot": 0, "metric": "acc,none", "average": "subtasks"}])["pair"]
    sized = run([{"task": "pair", "num_fewshot": 0, "metric": "acc,none"}])["pair"]
    assert mean == pytest.approx((each["pair_a"] + each["pair_b"]) / 2)
    assert sized == pytest.approx((4 * each["pair_a"] + 12 * each["pair_b"]) / 16)
    assert each["pair_a"] != each["pair_b"]  # else the two averages could not differ


def test_unknown_lm_eval_tasks_are_named(tmp_path):
    with pytest.raises(UserError, match=r"lm-eval knows no task \['no_such_task'\]"):
        run_suite("builtin:tiny-sft", [{"task": "no_such_task", "num_fewshot": 0, "metric": "acc,none"}], tmp_path)


def test_every_configured_metric_is_logged_per_iteration(eval_run):
    eval_run = eval_run[0]
    rows = json.loads((eval_run / "results.json").read_text())["iterations"]
    keys = ["wr_win_rate", "wr_ci_low", "wr_length_controlled_winrate", "div_mean_cosine", "div_self_bleu"]
    keys += ["lm_tinyworld_tinyworld_mc", "lm_tinyworld_average"]
    for row in rows:
        assert all(k in row for k in keys), sorted(row)
    history = read_offline_history(offline_run_files(eval_run)[-1])  # the run that finished (names sort by time)
    for k in keys:
        assert [h[k] for h in history if k in h] == [r[k] for r in rows], k
    for f in ("model_outputs.json",):
        assert (eval_run / "iter_1/export/alpaca_eval" / f).is_file()
    assert exports.read_alpaca_eval_annotations(eval_run / "iter_1/evals/annotations.json", n_boot=0)[
        "alpaca_win_rate"
    ] == pytest.approx(rows[1]["wr_win_rate"])


def test_final_only_skips_the_middle_iterations(tmp_path):
    cfg = compose(["eval=[validation,diversity,final]", "method.iterations=3"])
    assert cfg.eval.every == "final"
    from synpo.evaluation.groups import evaluate_groups
    from synpo.stages import RunSettings

    class Ctx:  # only the run's settings are read before the early return
        def __init__(self, cfg):
            self.run = RunSettings.of(cfg)

    assert evaluate_groups(Ctx(cfg), 2, "unused", "unused", None) == {}


def test_a_crash_during_evaluation_resumes_without_regenerating(eval_run):
    run_dir, before, log = eval_run
    answers = run_dir / "iter_1/evals/answers.jsonl"
    assert (answers.read_bytes(), answers.stat().st_mtime_ns) == before  # the same file, not rewritten
    assert any("iter_1/evals/answers" in line and "done earlier" in line for line in log.splitlines())


def test_each_eval_group_is_one_block_of_the_eval_schema():
    """The registry and the schema name the same groups: a block with no group would never run, a group with no
    block could not be configured."""
    import dataclasses
    import typing

    from synpo.evaluation.config import EvalConfig
    from synpo.evaluation.groups import GROUPS

    blocks = {k: t for k, t in typing.get_type_hints(EvalConfig).items() if dataclasses.is_dataclass(t)}
    assert blocks == {key: g.schema for key, g in GROUPS.items()}
    prefixes = [g.prefix for g in GROUPS.values() if g.prefix]
    assert len(set(prefixes)) == len(prefixes)  # one group's metrics never overwrite another's


def test_only_an_enabled_groups_block_is_checked():
    from synpo.evaluation.groups import eval_problems

    off = compose(["eval.export.formats=[alpaca_eval,nonsense]"])
    assert not off.eval.export.enabled
    assert eval_problems(off) == []
    on = compose(["eval=[validation,export]", "eval.export.formats=[alpaca_eval,nonsense]"])
    problems = eval_problems(on)
    assert len(problems) == 1 and problems[0].startswith("eval.export: formats=['alpaca_eval', 'nonsense']: unknown")
    with pytest.raises(UserError, match=r"eval\.export: formats="):
        validate(on)
