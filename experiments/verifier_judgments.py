"""What the tiny world's prompt parser and verifier make of a finished run's text, to compare two versions of them.

Writes one JSON line per judged text of each run directory: every synthetic prompt the generator wrote
(``iter_<t>/prompts_raw.jsonl``: the family it parses to, or null) and every answer that was scored (the chosen,
rejected and draft answers of ``iter_<t>/scores.jsonl``, the validation answers of ``iter_<t>/val_answers.jsonl``:
score and exactness). Run it under each version (``PYTHONPATH=<other checkout>`` selects the other ``synpo``), then
compare the two files:

    PYTHONPATH=/work/old python experiments/verifier_judgments.py RUN... > old.jsonl
    python experiments/verifier_judgments.py RUN... > new.jsonl
    python experiments/verifier_judgments.py --compare old.jsonl new.jsonl
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def judgments(run: Path):
    from synpo.prompts import parse_question
    from synpo.tinyworld.tasks import parse_prompt
    from synpo.tinyworld.verifier import verify

    for raw in sorted(run.glob("iter_*/prompts_raw.jsonl")):
        for i, line in enumerate(raw.read_text().splitlines()):
            question = parse_question(json.loads(line)["response"])
            task = parse_prompt(question) if question else None
            yield {"file": str(raw), "i": i, "kind": "prompt", "family": task.family if task else None}
    answer_files = [(f, ("chosen", "rejected", "policy")) for f in sorted(run.glob("iter_*/scores.jsonl"))]
    answer_files += [(f, ("greedy", "sampled")) for f in sorted(run.glob("iter_*/val_answers.jsonl"))]
    for path, keys in answer_files:
        for i, line in enumerate(path.read_text().splitlines()):
            row = json.loads(line)
            task = parse_prompt(row["prompt"])
            for key in (k for k in keys if isinstance(row.get(k), str)):  # the baselines' rows have fewer
                v = verify(task, row[key]) if task else None
                yield {"file": str(path), "i": i, "kind": key, "score": v and v.score, "exact": v and v.exact}


def compare(old_file: str, new_file: str) -> None:
    read = lambda f: [json.loads(x) for x in Path(f).read_text().splitlines()]  # noqa: E731
    old, new = read(old_file), read(new_file)
    if [(r["file"], r["i"], r["kind"]) for r in old] != [(r["file"], r["i"], r["kind"]) for r in new]:
        raise SystemExit("the two files judge different texts: give them the same run directories")
    changed: Counter = Counter()
    total: Counter = Counter()
    for a, b in zip(old, new, strict=True):
        kind = "prompt" if a["kind"] == "prompt" else "answer"
        total[kind] += 1
        changed[kind] += a != b
    for kind in total:
        print(f"{kind}s judged: {total[kind]}, judged differently: {changed[kind]}")
    for a, b in zip(old, new, strict=True):
        if a != b:
            print("  ", a, "->", {k: v for k, v in b.items() if a.get(k) != v})


def main(argv: list[str]) -> None:
    if argv[:1] == ["--compare"]:
        compare(argv[1], argv[2])
        return
    for run in argv:
        for row in judgments(Path(run)):
            print(json.dumps(row))


if __name__ == "__main__":
    main(sys.argv[1:])
