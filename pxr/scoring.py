"""Scorers of benchmark answers (paper §5): multiple choice, counting, exact text and ANLS.

Every scorer maps (the model's final text, the gold answer or answers, the options) to a score in [0, 1] and never
raises on model text. Multiple choice, number and text reuse `pxr.reward.is_correct` (the RL reward's matcher), so
a benchmark and the reward agree on what a right answer is. ANLS (Average Normalized Levenshtein Similarity, the
InfographicVQA metric of Biten et al. 2019) follows the official scorer: the item's score is `1 - NL` for its
closest gold answer (NL: edit distance of the normalized strings over the longer raw length), 0 when that is below
τ = 0.5.

Tests: tests/test_scoring.py (literal cases: letters, option text, numbers, ANLS thresholds).
"""

from __future__ import annotations

from pxr import protocol, reward

ANSWER_KINDS = ("mc", "number", "text", "anls", "auto")
ANLS_THRESHOLD = 0.5  # τ of the ANLS definition (InfographicVQA / DocVQA standard)


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _anls_normalize(text: str) -> str:
    # The official scorer compares answers lower-cased, stripped, with runs of whitespace made one space.
    return " ".join(str(text).strip().lower().split())


def anls(prediction: str | None, golds, *, threshold: float = ANLS_THRESHOLD) -> float:
    """ANLS of one prediction against one gold answer or a list of them, by the official InfographicVQA scorer's
    rule: `NL = lev(norm(p), norm(g)) / max(len(g), len(p))` with the lengths of the raw strings (as upper-cased:
    the scorer's own measure), the item's score `1 - min NL` over the golds, kept unless it is below `threshold`
    (so NL = 0.5 still scores 0.5: `anls("12", ["13"]) == 0.5`). Empty gold and prediction: NL 0. A missing
    prediction (no answer extracted) scores 0."""
    if prediction is None:
        return 0.0
    golds = list(golds) if isinstance(golds, (list, tuple)) else [golds]
    if not golds:
        return 0.0
    raw, predicted = str(prediction), _anls_normalize(prediction)
    distances = []
    for gold in map(str, golds):
        length = max(len(gold.upper()), len(raw.upper()))
        distances.append(levenshtein(_anls_normalize(gold), predicted) / length if length else 0.0)
    score = 1.0 - min(distances)
    return 0.0 if score < threshold else score


def score_response(response: str, answer, kind: str = "auto", options: list[str] | None = None) -> float:
    """The score of a final response: 1.0 / 0.0 for mc, number, text and auto (see `pxr.reward.is_correct`), the
    ANLS for "anls". Never raises on the response; an unknown `kind` is a ValueError."""
    if kind not in ANSWER_KINDS:
        raise ValueError(f"unknown answer kind {kind!r}; choose one of {', '.join(ANSWER_KINDS)}")
    if not isinstance(response, str):
        return 0.0
    if kind == "anls":
        golds = answer if isinstance(answer, (list, tuple)) else [answer]
        return anls(protocol.final_answer(response, options), [str(g) for g in golds])
    return float(reward.is_correct(response, answer, kind=kind, options=options))
