"""Does SynPO's tiny-world gain come from content or from form? Per group of runs (one per seed), per iteration:
validation score, exact content, the greedy answers' mean content and form (the verifier's two parts), the tiny
harness's generation and multiple-choice accuracy, the diversity of the synthetic prompts (iteration 0: the seed
prompts), and, in the kept pairs (SynPO's), how often the chosen answer's content is worse than the rejected one's,
how often the improver's rewrite lost the draft's content, how often both sides are wrong; over all candidates, how
often the improver's rewrite of a right draft is wrong; and the prompt families.

    python experiments/tiny_world_content.py before=/tmp/study/before_s0 before=/tmp/study/before_s1 after=<run dir>

One ``group=run_dir`` argument per run (a sweep point's directory name may hold commas); runs of a group are
averaged.

Mean [95% t-interval over seeds] where there are several runs (synpo.tables.cell).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from synpo.tables import cell
from synpo.tinyworld.tasks import FAMILIES, parse_prompt
from synpo.tinyworld.verifier import verify


def pair_counts(run: Path, t: int) -> dict:
    """Counts over iteration t's kept pairs, judged by the verifier's content (not its score)."""
    rows = [json.loads(x) for x in (run / f"iter_{t}" / "scores.jsonl").read_text().splitlines()]
    kept = [r for r in rows if r["kept"]]
    worse = lost = both_wrong = broken = drafts_right = 0
    for r in kept:
        task = parse_prompt(r["prompt"])
        chosen, rejected, draft = (verify(task, r[k]) for k in ("chosen", "rejected", "policy"))
        worse += chosen.content < rejected.content
        lost += chosen.content < draft.content
        both_wrong += not chosen.exact and not rejected.exact
    for r in rows:  # every candidate: how often the improver's rewrite of a right draft is wrong
        task = parse_prompt(r["prompt"])
        if verify(task, r["policy"]).exact:
            drafts_right += 1
            broken += not verify(task, r["chosen"]).exact
    families = Counter(parse_prompt(r["prompt"]).family for r in rows)
    n = max(1, len(kept))
    out = {"kept": len(kept), "content_worse": worse / n, "improver_lost": lost / n, "both_wrong": both_wrong / n}
    out["right_draft_broken"] = broken / max(1, drafts_right)
    out.update({f"share_{f}": families.get(f, 0) / max(1, len(rows)) for f in FAMILIES})
    return out


def val_answers(run: Path, row: dict) -> Path | None:
    """The selected policy's validation answers: ``iter_t/val_answers.jsonl``, or its beta candidate's."""
    it = run / f"iter_{row['iteration']}"
    beta = row.get("beta")
    for path in [it / "val_answers.jsonl"] + ([it / f"beta_{beta:g}" / "val_answers.jsonl"] if beta else []):
        if path.is_file():
            return path
    return None


def content_and_form(path: Path) -> dict:
    """Mean content and mean form (the verifier's two parts) of the greedy validation answers."""
    verdicts = [verify(parse_prompt(r["prompt"]), r["greedy"]) for r in map(json.loads, path.read_text().splitlines())]
    n = max(1, len(verdicts))
    return {"val_content": sum(v.content for v in verdicts) / n, "val_form": sum(v.form for v in verdicts) / n}


def rows_of(run: Path) -> list[dict]:
    rows = json.loads((run / "results.json").read_text())["iterations"]
    for r in rows:
        answers = val_answers(run, r)
        if answers is not None:
            r.update(content_and_form(answers))
        scores = run / f"iter_{r['iteration']}" / "scores.jsonl"
        if r["iteration"] > 0 and scores.is_file() and '"policy"' in scores.read_text():  # SynPO's pairs
            r.update(pair_counts(run, r["iteration"]))
    return rows


COLUMNS = [
    ("val_score", 1, 3),
    ("val_exact", 1, 3),
    ("val_content", 1, 3),
    ("val_form", 1, 3),
    ("lm_tinyworld_tinyworld_gen", 1, 3),
    ("lm_tinyworld_tinyworld_mc", 1, 3),
    ("div_mean_cosine", 1, 3),
    ("kept", 1, 0),
    ("content_worse", 1, 3),
    ("improver_lost", 1, 3),
    ("both_wrong", 1, 3),
    ("right_draft_broken", 1, 3),
    ("share_sort", 1, 2),
    ("share_count", 1, 2),
]


def main(argv: list[str]) -> None:
    print("| group | iteration | n | " + " | ".join(c for c, _, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 3) + "|")
    groups: dict[str, list[Path]] = {}
    for arg in argv:
        name, _, run_dir = arg.partition("=")
        groups.setdefault(name, []).append(Path(run_dir))
    for name, dirs in groups.items():
        runs = [rows_of(d) for d in dirs]
        for t in range(len(runs[0])):
            at = [r[t] for r in runs if len(r) > t]
            cells = [cell(at, key, scale, digits) for key, scale, digits in COLUMNS]
            print(f"| {name} | {t} | {len(at)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
