"""Validation on the held-out seed prompts: mean scorer score and win rate against pi_0, greedy and sampled."""

from __future__ import annotations


def win_rate(scores: list[float], reference: list[float], tie_eps: float = 1e-9) -> float:
    """Share of prompts where ``scores`` beats ``reference``; a tie counts one half."""
    if len(scores) != len(reference) or not scores:
        raise ValueError(
            f"win_rate needs two equally long non-empty score lists, got {len(scores)} and {len(reference)}"
        )
    wins = sum(
        1.0 if s > r + tie_eps else 0.5 if abs(s - r) <= tie_eps else 0.0
        for s, r in zip(scores, reference, strict=False)
    )
    return wins / len(scores)


def validation_metrics(rows: list[dict], reference_rows: list[dict] | None) -> dict:
    """Metrics from answer rows ``{prompt, greedy_score, [sampled_score], [greedy_exact]}`` and pi_0's rows."""
    n = len(rows)
    out = {"val_score": round(sum(r["greedy_score"] for r in rows) / n, 6)}
    if "greedy_exact" in rows[0]:
        out["val_exact"] = round(sum(r["greedy_exact"] for r in rows) / n, 6)
    if "sampled_score" in rows[0]:
        out["val_score_sampled"] = round(sum(r["sampled_score"] for r in rows) / n, 6)
    if reference_rows is not None:
        ref = {r["prompt"]: r for r in reference_rows}
        for kind, suffix in (("greedy", ""), ("sampled", "_sampled")):
            if f"{kind}_score" not in rows[0] or f"{kind}_score" not in reference_rows[0]:
                continue
            if f"{kind}_vs_reference" in rows[0]:  # a pairwise judge compared the two answers directly
                direct = [r[f"{kind}_vs_reference"] for r in rows]
                rate = win_rate(direct, [0.0] * n)
            else:
                rate = win_rate([r[f"{kind}_score"] for r in rows], [ref[r["prompt"]][f"{kind}_score"] for r in rows])
            out[f"val_win_rate{suffix}"] = round(rate, 6)
    return out
