"""Model answers in the official evaluators' formats, and their judgments read back into our numbers.

- **AlpacaEval 2** (alpaca_eval 0.6): answers ``model_outputs.json`` = [{instruction, output, generator, dataset}];
  judgments ``annotations.json`` = [{instruction, output_1 (reference), generator_1, output_2 (model), generator_2,
  preference (1 reference, 2 model, 0 or 1.5 tie; fractional for weighted annotators)}], which alpaca_eval writes
  under ``results/<model>/<annotator>/``. Read back: raw and length-controlled win rates (``winrate.py``).
- **Arena-Hard** (arena-hard-auto v0.1): answers ``model_answer/<model>.jsonl`` = {question_id, answer_id, model_id,
  choices: [{index, turns: [{content, token_len}]}], tstamp}; judgments ``model_judgment/<judge>/<model>.jsonl`` =
  {question_id, model, judge, games: [game 1 (A = baseline, B = model), game 2 (A = model, B = baseline)], each
  {user_prompt, judgment, score: "A>>B" | "A>B" | "A=B" | "B>A" | "B>>A" | null}}. Read back: the model's win rate
  over games with a strong verdict counted 3 times (the tool's weighting), with its standard error. The tool's own
  leaderboard fits a Bradley-Terry model over all models; with one model against the baseline it ranks the same.
- **MT-Bench** (FastChat llm_judge): answers ``model_answer/<model>.jsonl`` = {question_id, answer_id, model_id,
  choices: [{index, turns: [str, ...]}], tstamp}; judgments ``model_judgment/gpt-4_single.jsonl`` = {question_id,
  model, judge, user_prompt, judgment, score (1-10; -1 when the judge's reply had no rating), turn, tstamp}. Read
  back: mean score per turn and overall, ratings of -1 left out (as FastChat's show_result).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path

from synpo.artifacts import atomic_write_text, iter_jsonl, write_jsonl
from synpo.errors import UserError
from synpo.evaluation.winrate import from_alpaca_preference, lc_win_rate, win_rate

log = logging.getLogger(__name__)


def export_model_name(run_name: str, t: int) -> str:
    """The model's name in exported answers and judgments: ``<run name>-iter<t>``."""
    return f"{run_name}-iter{t}"


def _answer_id(model: str, qid) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"synpo/{model}/{qid}").hex  # stable: a re-export is byte-identical


# --- AlpacaEval ---------------------------------------------------------------------------------------------------


def write_alpaca_eval_outputs(path: Path, model: str, instructions: list[str], outputs: list[str], datasets=None):
    rows = [
        {"instruction": x, "output": y, "generator": model, "dataset": (datasets[i] if datasets else "synpo")}
        for i, (x, y) in enumerate(zip(instructions, outputs, strict=True))
    ]
    atomic_write_text(Path(path), json.dumps(rows, indent=2, ensure_ascii=False))


def read_alpaca_eval_questions(path: Path) -> tuple[list[str], list[str]]:
    rows = _load_json_list(Path(path), ("instruction",))
    return [r["instruction"] for r in rows], [r.get("dataset", "alpaca_eval") for r in rows]


ALPACA_EVAL_SIZE = 805  # AlpacaEval 2's instructions; its GLM's per-instruction difficulty is indexed by position


def read_alpaca_eval_annotations(path: Path, model: str | None = None, n_boot: int = 1000) -> dict:
    """Raw and length-controlled win rates of ``model`` (default: the single ``generator_2``) from alpaca_eval's
    annotations, and ``alpaca_lc_glm``: which length-controlled model gave the LC numbers (``alpaca_lc``)."""
    rows = _load_json_list(Path(path), ("output_1", "output_2", "generator_2", "preference"))
    models = sorted({r["generator_2"] for r in rows})
    model = model or (models[0] if len(models) == 1 else None)
    if model is None:
        raise UserError(f"{path} holds annotations of several models {models}: name one")
    rows = [r for r in rows if r["generator_2"] == model]
    judged = [r for r in rows if r["preference"] is not None]
    if not judged:
        raise UserError(f"{path} holds no annotation of {model!r} with a preference")
    prefs = [from_alpaca_preference(r["preference"]) for r in judged]
    out = {f"alpaca_{k}": v for k, v in win_rate(prefs, n_boot=n_boot).items()}
    if len(judged) >= 3:
        out.update({f"alpaca_{k}": v for k, v in alpaca_lc(rows, judged, prefs, n_boot).items()})
    return out


def alpaca_lc(rows: list[dict], judged: list[dict], prefs: list[float], n_boot: int) -> dict:
    """The length-controlled win rate of AlpacaEval 2's leaderboard where it applies: alpaca_eval's own
    ``length_controlled_v1`` (a GLM with each instruction's difficulty, regularised toward the annotations of its
    gamed baselines, both fetched from the hub) when the package is installed (``pip install -e .[alpaca]``) and
    ``rows`` are AlpacaEval's 805 instructions in order (its difficulty is looked up by position). Otherwise ours,
    named in ``lc_glm`` with the reason: AlpacaEval's minimal formula (the length term only), fitted without
    alpaca_eval's cross-validated penalty (0.07 points from its fit on ``tests/test_winrate.py``'s annotations), with
    a bootstrap interval."""
    if len(rows) != ALPACA_EVAL_SIZE:
        reason = (
            f"{len(rows)} instructions, not AlpacaEval's {ALPACA_EVAL_SIZE}: its per-instruction difficulty does "
            "not apply"
        )
    else:
        try:
            from alpaca_eval.metrics.glm_winrate import get_length_controlled_winrate
        except ImportError:
            reason = "alpaca_eval is not installed (pip install -e .[alpaca])"
        else:
            try:
                theirs = get_length_controlled_winrate(
                    rows, glm_name="length_controlled_v1", save_weights_dir=None, is_warn_extreme_changes=False
                )
                return {
                    "length_controlled_winrate": float(theirs["length_controlled_winrate"]),
                    "lc_standard_error": float(theirs["lc_standard_error"]),
                    "lc_glm": "alpaca_eval length_controlled_v1",
                }
            except Exception as e:  # its hub files unreachable (offline), or its fit failed: say so, use ours
                reason = f"alpaca_eval's length_controlled_v1 failed: {type(e).__name__}: {str(e).splitlines()[0]}"
                log.warning("length-controlled win rate: %s; using ours", reason)
    lc = lc_win_rate(prefs, [len(r["output_2"]) for r in judged], [len(r["output_1"]) for r in judged], n_boot=n_boot)
    return {**{k: v for k, v in lc.items() if k != "weights"}, "lc_glm": f"synpo minimal GLM ({reason})"}


# --- Arena-Hard and MT-Bench answers (FastChat's model_answer format) ------------------------------------------------


def write_model_answers(path: Path, model: str, question_ids: list, turns: list[list[str]], arena_hard: bool):
    """One row per question; Arena-Hard's turns are {content, token_len}, MT-Bench's plain strings."""
    rows = []
    for qid, answer_turns in zip(question_ids, turns, strict=True):
        content = [{"content": a, "token_len": len(a.split())} for a in answer_turns] if arena_hard else answer_turns
        rows.append(
            {
                "question_id": qid,
                "answer_id": _answer_id(model, qid),
                "model_id": model,
                "choices": [{"index": 0, "turns": content}],
                "tstamp": time.time(),
            }
        )
    write_jsonl(Path(path), rows)


def read_questions(path: Path, arena_hard: bool) -> tuple[list, list[list[str]]]:
    """Question ids and user turns from an Arena-Hard or MT-Bench ``question.jsonl``."""
    ids, turns = [], []
    for lineno, row in iter_jsonl(Path(path)):
        where = f"{path}:{lineno}"
        if "question_id" not in row or not isinstance(row.get("turns"), list) or not row["turns"]:
            raise UserError(f"{where}: a question row needs question_id and a non-empty turns list")
        ids.append(row["question_id"])
        turns.append([t["content"] if arena_hard and isinstance(t, dict) else str(t) for t in row["turns"]])
    return ids, turns


_ARENA_MODEL_PREF = {"A>>B": 0.0, "A>B": 0.0, "A=B": 0.5, "B>A": 1.0, "B>>A": 1.0}  # game 1: B is the model
_STRONG = {"A>>B", "B>>A"}


def read_arena_hard_judgments(path: Path, weight_strong: int = 3) -> dict:
    """The model's win rate against the baseline over both games of every question (strong verdicts weighted)."""
    prefs: list[float] = []
    n_questions = skipped = 0
    for lineno, row in iter_jsonl(Path(path)):
        where = f"{path}:{lineno}"
        games = row.get("games")
        if not isinstance(games, list) or len(games) != 2:
            raise UserError(f"{where}: an Arena-Hard judgment needs 'games' with two games (both orders)")
        n_questions += 1
        for g, game in enumerate(games):
            score = game.get("score")
            if score not in _ARENA_MODEL_PREF:
                skipped += 1
                continue
            p = _ARENA_MODEL_PREF[score] if g == 0 else 1.0 - _ARENA_MODEL_PREF[score]  # game 2: A is the model
            prefs += [p] * (weight_strong if score in _STRONG else 1)
    if not prefs:
        raise UserError(f"{path}: no game with a verdict")
    wr = win_rate(prefs, n_boot=0)
    return {
        "arena_win_rate": wr["win_rate"],
        "arena_standard_error": wr["standard_error"],
        "arena_questions": n_questions,
        "arena_games_without_verdict": skipped,
    }


def read_mt_bench_judgments(path: Path, model: str) -> dict:
    scores: dict[int, list[float]] = {}
    for lineno, row in iter_jsonl(Path(path)):
        where = f"{path}:{lineno}"
        if row.get("model") != model:
            continue
        if "score" not in row or "turn" not in row:
            raise UserError(f"{where}: an MT-Bench single judgment needs 'score' and 'turn'")
        if row["score"] == -1:
            continue
        scores.setdefault(int(row["turn"]), []).append(float(row["score"]))
    if not scores:
        raise UserError(f"{path}: no rated judgment of model {model!r}")
    out = {f"mt_bench_turn_{t}": sum(v) / len(v) for t, v in sorted(scores.items())}
    every = [x for v in scores.values() for x in v]
    out["mt_bench_score"] = sum(every) / len(every)
    return out


def _load_json_list(path: Path, keys: tuple) -> list[dict]:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(rows, list):
        raise UserError(f"{path}: expected a JSON list of records")
    for i, r in enumerate(rows):
        missing = [k for k in keys if not isinstance(r, dict) or k not in r]
        if missing:
            raise UserError(f"{path}: record {i} lacks {missing}")
    return rows
