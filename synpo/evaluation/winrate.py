"""Win rates against reference answers: raw, and length-controlled as in AlpacaEval 2, each with its error bars.

Preferences are P(model's answer beats the reference) in [0, 1]: 1 a win, 0 a loss, 0.5 a tie; a judge may give
anything in between. AlpacaEval's ``preference`` (1 = reference, 2 = model, 0 or 1.5 = tie) maps to ``p - 1``.

**Raw win rate**: mean preference x 100, its standard error (``sem``, as AlpacaEval reports) and a percentile
bootstrap interval over instructions.

**Length-controlled win rate** (AlpacaEval 2's GLM, Dubois et al. 2024): a logistic model of the preference on
``tanh(std_delta_len)`` + ``instruction_difficulty`` + an intercept (no other intercept), where ``std_delta_len`` is
(len(reference) - len(model)) in characters divided by its standard deviation over the annotations; soft labels are
fitted by weighted log loss. The LC win rate is the mean predicted preference with the length term set to 0, x 100.
Without per-instruction difficulties (AlpacaEval ships them for its 805 instructions; elsewhere they are unknown)
the term is dropped, which is AlpacaEval's ``length_controlled_minimal`` formula. The fit here is unpenalised
Newton-Raphson (alpaca_eval chooses an L1 strength by 5-fold CV; ``tests/test_winrate.py`` measures the difference
on a fixed annotation set). AlpacaEval's default ``length_controlled_v1`` also regularises towards two "gamed"
baselines from its leaderboard (weight 0.2); that needs their annotations and is not reproduced.
"""

from __future__ import annotations

import math

import numpy as np


def _sem(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def _bootstrap(stat, n: int, n_boot: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of ``stat(indices)`` over ``n_boot`` resamples of ``n`` instructions."""
    rng = np.random.default_rng(seed)
    values = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)])
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def win_rate(preferences, n_boot: int = 2000, seed: int = 0) -> dict:
    """Raw win rate (percent) with its standard error and a 95% bootstrap interval; ties count one half."""
    p = np.asarray(preferences, dtype=float)
    if p.ndim != 1 or len(p) == 0:
        raise ValueError("win_rate needs a non-empty list of preferences")
    if np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ValueError("preferences must be in [0, 1] (1: the model wins, 0.5: a tie)")
    out = {
        "win_rate": float(p.mean() * 100),
        "standard_error": _sem(p) * 100,
        "n_wins": int((p > 0.5).sum()),
        "n_losses": int((p < 0.5).sum()),
        "n_draws": int((p == 0.5).sum()),
        "n_total": int(len(p)),
    }
    if n_boot:
        lo, hi = _bootstrap(lambda idx: p[idx].mean() * 100, len(p), n_boot, seed)
        out.update(ci_low=lo, ci_high=hi)
    return out


def _fit_logistic(x: np.ndarray, y: np.ndarray, iters: int = 100, ridge: float = 1e-8) -> np.ndarray:
    """Weights minimising the soft-label log loss sum(-y log s(xw) - (1 - y) log(1 - s(xw))), by Newton-Raphson."""
    w = np.zeros(x.shape[1])
    for _ in range(iters):
        z = np.clip(x @ w, -30, 30)
        s = 1.0 / (1.0 + np.exp(-z))
        grad = x.T @ (s - y) + ridge * w
        hess = (x * (s * (1 - s))[:, None]).T @ x + ridge * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return w


def _lc_features(len_model: np.ndarray, len_ref: np.ndarray, difficulty: np.ndarray | None) -> tuple:
    delta = len_ref - len_model
    sd = delta.std(ddof=1) if len(delta) > 1 else 0.0
    std_delta = delta / sd if sd > 0 else np.zeros_like(delta)
    cols = [np.tanh(std_delta)] + ([difficulty] if difficulty is not None else []) + [np.ones_like(delta)]
    names = ["np.tanh(std_delta_len)"] + (["instruction_difficulty"] if difficulty is not None else [])
    return np.column_stack(cols), names + ["not_gamed_baseline"]


def _lc_predict(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    x0 = x.copy()
    x0[:, 0] = 0.0  # no length difference
    return 1.0 / (1.0 + np.exp(-np.clip(x0 @ w, -30, 30)))


def lc_win_rate(preferences, len_model, len_reference, difficulty=None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Length-controlled win rate (percent), its standard error (AlpacaEval's ``lc_standard_error``), a 95%
    bootstrap interval (the GLM refitted on each resample) and the fitted weights."""
    p = np.asarray(preferences, dtype=float)
    lm = np.asarray(len_model, dtype=float)
    lr = np.asarray(len_reference, dtype=float)
    d = None if difficulty is None else np.asarray(difficulty, dtype=float)
    if not (len(p) == len(lm) == len(lr)) or (d is not None and len(d) != len(p)):
        raise ValueError("preferences, lengths and difficulties must have one entry per instruction")
    if len(p) < 3:
        raise ValueError("the length-controlled win rate needs at least 3 annotations")

    def fit(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
        x, names = _lc_features(lm[idx], lr[idx], None if d is None else d[idx])
        w = _fit_logistic(x, p[idx])
        return _lc_predict(x, w), w, names

    pred, w, names = fit(np.arange(len(p)))
    out = {
        "length_controlled_winrate": float(pred.mean() * 100),
        "lc_standard_error": _sem(pred) * 100,
        "weights": dict(zip(names, (float(v) for v in w), strict=True)),
    }
    if n_boot:
        lo, hi = _bootstrap(lambda idx: fit(idx)[0].mean() * 100, len(p), n_boot, seed)
        out.update(lc_ci_low=lo, lc_ci_high=hi)
    return out


def alpaca_preference(p: float) -> float:
    """Our preference (0..1, model wins at 1) in AlpacaEval's encoding (1 reference, 2 model, 1.5 tie)."""
    return 1.0 + float(p)


def from_alpaca_preference(pref: float) -> float:
    """AlpacaEval's preference (1..2, 0 = tie) as ours."""
    pref = float(pref)
    return 0.5 if pref == 0.0 else pref - 1.0
