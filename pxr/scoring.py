"""Scorers of benchmark answers (SPEC §5): multiple choice, counting, exact text and ANLS.

Every scorer maps (the model's final text, the gold answer or answers, the options) to a score in [0, 1] and never
raises on model text. Multiple choice, number and text reuse `pxr.reward.is_correct` (the RL reward's matcher), so
a benchmark and the reward agree on what a right answer is. ANLS (Average Normalized Levenshtein Similarity, the
InfographicVQA metric of Biten et al. 2019) is new here: per gold answer `1 - NL` when the normalized edit distance
NL is below the threshold τ (0.5), else 0; the item's score is the maximum over its gold answers.

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
    # The reference implementation compares lower-cased answers with surrounding and repeated spaces removed.
    return " ".join(str(text).lower().split())


def anls(prediction: str | None, golds, *, threshold: float = ANLS_THRESHOLD) -> float:
    """ANLS of one prediction against one gold answer or a list of them: max over golds of `1 - NL` when
    `NL = lev(p, g) / max(|p|, |g|)` is below `threshold`, else 0. A missing prediction scores 0."""
    if prediction is None:
        return 0.0
    golds = list(golds) if isinstance(golds, (list, tuple)) else [golds]
    predicted = _anls_normalize(prediction)
    best = 0.0
    for gold in golds:
        target = _anls_normalize(gold)
        longest = max(len(predicted), len(target))
        if longest == 0:
            continue
        distance = levenshtein(predicted, target) / longest
        best = max(best, 1.0 - distance if distance < threshold else 0.0)
    return best


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
