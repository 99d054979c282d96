"""Rewards for curiosity-driven RL (paper §4, "curiosity-driven reward", and the released code's form).

Two parts:
- `is_correct`: the binary correctness r of one response against a gold answer (multiple choice, number or short
  text). It never raises on model text: anything it cannot read scores 0, never -1 (the released code trained on -1
  for parse failures).
- `shaped_reward_terms` / `shaped_rewards`: the group-level reward r' = r + α·curiosity + β·penalty for the G
  rollouts of one query, in the paper's form or the released code's form; `group_rewards` derives the op counts from
  episode records (`VisualEpisode.record()`) with switches for the released code's choices (`count_failed_ops`,
  `zero_if_unfixed_error`).

Pure Python, no torch. Tests: tests/test_reward.py (literal worked values and hypothesis properties).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pxr.protocol import BARE_ANSWER_MAX_CHARS, OPTION_LETTERS, choice_letter, final_answer

KINDS = ("auto", "mc", "number", "text")
REWARD_FORMS = ("paper", "released")
# Episodes the model ended itself by answering; one stopped by a limit, cut by a token budget or ended on a call
# scores 0 (RL's r, SFT's and evaluation's accuracy alike: `answer_correct`).
SCORED_ENDINGS = ("answer",)
_REL_TOL = 1e-6
# The released code scaled the bonus so a group's total curiosity never exceeds this ("maximum curiosity is 0.25").
_RELEASED_CURIOSITY_SCALE = 0.25
# The released code divided the video bonus by 1.5 instead of 2, i.e. α is 4/3 larger for videos.
_RELEASED_VIDEO_FACTOR = 4 / 3

_NUMBER_WORDS = {
    word: i
    for i, word in enumerate(
        (
            "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
            "eighteen nineteen twenty"
        ).split()
    )
}
_NUMBER_WORDS |= {w: 10 * i for i, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), start=3)}
_NUMBER_WORDS["dozen"] = 12
_DIGITS = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+"
_NUMBER_RE = re.compile(rf"^({_DIGITS})\s*%?$")
_TOKEN_RE = re.compile(rf"(?P<num>{_DIGITS})|(?P<word>[a-z]+)")
_TEXT_MACRO_RE = re.compile(r"\\text\s*\{([^{}]*)\}")
# A letter followed by an explicit delimiter ("B.", "B)", "(B) red"): in a multiple-choice question this names the
# option even when the text after it is not the option's wording; "A cat" does not.
_DELIMITED_LETTER_RE = re.compile(r"^\(?\s*([A-Z])\s*[).:]")


# --------------------------------------------------------------------------------------------- correctness


def _unwrap(text: str) -> str:
    previous = None
    while previous != text:
        previous, text = text, _TEXT_MACRO_RE.sub(r"\1", text)
    return text


def _normalize_text(text: str) -> str:
    words = re.sub(r"[^\w\s]", " ", _unwrap(text).lower()).split()
    return " ".join(w for w in words if w not in ("a", "an", "the"))


def _to_float(digits: str) -> float | None:
    try:
        value = float(digits.replace(",", ""))
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def _strict_number(text: str) -> float | None:
    """The value of a text that is nothing but a number: '3', '+3.0', '1,000', '45%', 'twenty-one', 'a dozen'."""
    s = _unwrap(text).lower().replace("\\%", "%").strip().strip("$").strip().rstrip(".").strip()
    match = _NUMBER_RE.match(s)
    if match:
        return _to_float(match.group(1))
    words = re.split(r"[\s-]+", s)
    if words[0] == "a" and words[1:] == ["dozen"]:
        return 12.0
    if len(words) == 1 and words[0] in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[words[0]])
    if len(words) == 2 and words[0] in _NUMBER_WORDS and words[1] in _NUMBER_WORDS:
        tens, unit = _NUMBER_WORDS[words[0]], _NUMBER_WORDS[words[1]]
        if tens >= 20 and tens % 10 == 0 and 1 <= unit <= 9:
            return float(tens + unit)
    return None


def _numbers_in(text: str) -> list[float]:
    """Every number a text mentions, digits or words, with 'twenty one' read as one number."""
    values: list[float] = []
    tens_word_last = False
    for match in _TOKEN_RE.finditer(_unwrap(text).lower()):
        word = match.group("word")
        if word is None:
            value = _to_float(match.group("num"))
            if value is not None:
                values.append(value)
            tens_word_last = False
            continue
        value = _NUMBER_WORDS.get(word)
        if value is not None and tens_word_last and 1 <= value <= 9:
            values[-1] += value
            tens_word_last = False
        elif value is not None:
            values.append(float(value))
            tens_word_last = value >= 20 and value % 10 == 0
        else:
            tens_word_last = False
    return values


def _as_number(text: str) -> float | None:
    value = _strict_number(text)
    if value is None and len(text) <= BARE_ANSWER_MAX_CHARS:
        # "3 cars", "There are 3.": a short answer whose only number is the count.
        found = _numbers_in(text)
        if len(found) == 1:
            value = found[0]
    return value


def _option_letter(text: str, options: list[str] | None) -> str | None:
    letter = choice_letter(text, options)
    if letter is None:
        match = _DELIMITED_LETTER_RE.match(text.strip())
        if match and OPTION_LETTERS.index(match.group(1)) < (len(options) if options else len(OPTION_LETTERS)):
            letter = match.group(1)
    return letter


def _matches_mc(candidate: str, gold: str, options: list[str] | None) -> bool:
    cand_letter, gold_letter = _option_letter(candidate, options), _option_letter(gold, options)
    if cand_letter is not None and gold_letter is not None:
        return cand_letter == gold_letter
    return _matches_text(candidate, gold)


def _matches_number(candidate: str, gold: str | float) -> bool:
    gold_value = float(gold) if isinstance(gold, float) else _as_number(gold)
    cand_value = _as_number(candidate)
    if gold_value is None or cand_value is None:
        return False
    return math.isclose(cand_value, gold_value, rel_tol=_REL_TOL)


def _matches_text(candidate: str, gold: str) -> bool:
    normalized = _normalize_text(candidate)
    return bool(normalized) and normalized == _normalize_text(gold)


def _auto_kind(gold: str | float, options: list[str] | None) -> str:
    if options:
        return "mc"
    if isinstance(gold, float):
        return "number"
    bare = gold.strip().strip("()[]. ")
    if len(bare) == 1 and bare in OPTION_LETTERS:
        return "mc"
    return "number" if _strict_number(gold) is not None else "text"


def _gold_values(answer) -> list[str | float]:
    golds = list(answer) if isinstance(answer, (list, tuple)) else [answer]
    values: list[str | float] = []
    for gold in golds:
        if isinstance(gold, (int, float)) and not isinstance(gold, bool):
            try:
                values.append(float(gold))
            except OverflowError:  # an int beyond float range can still match as text
                values.append(str(gold))
        elif isinstance(gold, (str, bool)):
            values.append(str(gold))
        else:
            raise TypeError(f"gold answers must be str, int or float (or a list of them), got {type(gold).__name__}")
    return values


def is_correct(response: str, answer, kind: str = "auto", options: list[str] | None = None) -> bool:
    """Whether `response` (the model's full final text, or a bare answer) answers `answer` (or any of a list).

    kind: "mc" compares option letters (or option text), "number" compares values, "text" compares normalized
    strings, "auto" picks per gold answer (mc with options or a one-letter gold, number when the gold is one, else
    text; numbers also accept an equal normalized text). Unreadable responses give False, never an exception.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown answer kind {kind!r}; choose one of {', '.join(KINDS)}")
    golds = _gold_values(answer)
    if not isinstance(response, str):
        return False
    candidate = final_answer(response, options)
    if candidate is None:
        return False
    for gold in golds:
        gold_kind = _auto_kind(gold, options) if kind == "auto" else kind
        gold_text = gold if isinstance(gold, str) else f"{gold:g}"
        if gold_kind == "mc":
            matched = _matches_mc(candidate, gold_text, options)
        elif gold_kind == "number":
            matched = _matches_number(candidate, gold) or (kind == "auto" and _matches_text(candidate, gold_text))
        else:
            matched = _matches_text(candidate, gold_text)
        if matched:
            return True
    return False


def answer_correct(ending: str | None, final_text: str, answer, *, options=None, kind: str = "auto") -> bool:
    """The one correctness rule: the episode ended by answering (`SCORED_ENDINGS`) and its final turn matches
    `answer` (`is_correct`). RL's r, the accuracy notebooks 20 and 30 report and evaluation's score all use it."""
    return (
        ending in SCORED_ENDINGS and answer is not None and is_correct(final_text, answer, kind=kind, options=options)
    )


# ---------------------------------------------------------------------------------------------- shaping


@dataclass(frozen=True)
class RewardTerms:
    """Per-rollout parts of r' for one group; `total` is what the advantage is computed from."""

    correctness: list[float]
    curiosity: list[float]
    penalty: list[float]
    total: list[float]
    rapr: float


def pixel_reasoning_rate(n_ops: Sequence[int]) -> float:
    """RaPR: the fraction of a query's rollouts that executed at least one visual operation."""
    counts = list(n_ops)
    if not counts:
        raise ValueError("RaPR needs a non-empty group of rollouts")
    if any(n < 0 for n in counts):
        raise ValueError(f"op counts must be non-negative, got {counts}")
    return sum(n > 0 for n in counts) / len(counts)


def shaped_reward_terms(
    correct: Sequence[float],
    n_ops: Sequence[int],
    *,
    target_rate: float = 0.3,
    max_ops: int = 1,
    curiosity_coef: float = 0.5,
    penalty_coef: float = 0.05,
    form: str = "paper",
    is_video: bool = False,
) -> RewardTerms:
    """The breakdown of `shaped_rewards` (same arguments): correctness, curiosity, penalty, total, and RaPR."""
    if form not in REWARD_FORMS:
        raise ValueError(f"unknown reward form {form!r}; choose one of {', '.join(REWARD_FORMS)}")
    correctness, counts = [float(c) for c in correct], list(n_ops)
    if len(correctness) != len(counts):
        raise ValueError(f"correct and n_ops must have one entry per rollout, got {len(correctness)} and {len(counts)}")
    rapr = pixel_reasoning_rate(counts)  # raises on an empty group
    bonus = curiosity_coef * max(target_rate - rapr, 0.0)
    if form == "released" and rapr > 0:
        # The released code's extra factor keeps a group's total bonus constant in how many rollouts used ops.
        bonus *= (_RELEASED_VIDEO_FACTOR if is_video else 1.0) * _RELEASED_CURIOSITY_SCALE / rapr
    curiosity = [bonus if n > 0 else 0.0 for n in counts]
    penalty = [penalty_coef * min(max_ops - n, 0) for n in counts]
    total = [r + c + p for r, c, p in zip(correctness, curiosity, penalty, strict=True)]
    return RewardTerms(correctness, curiosity, penalty, total, rapr)


def group_table(terms: RewardTerms, n_ops: Sequence[int]) -> list[dict]:
    """One row per rollout of a group, term by term (for a notebook's table): correctness, ops, curiosity bonus,
    op penalty and the total r'."""
    columns = zip(terms.correctness, n_ops, terms.curiosity, terms.penalty, terms.total, strict=True)
    return [
        {"rollout": i + 1, "correct": c, "ops": n, "curiosity": b, "penalty": p, "reward": t}
        for i, (c, n, b, p, t) in enumerate(columns)
    ]


def shaped_rewards(
    correct: Sequence[float],
    n_ops: Sequence[int],
    *,
    target_rate: float = 0.3,
    max_ops: int = 1,
    curiosity_coef: float = 0.5,
    penalty_coef: float = 0.05,
    form: str = "paper",
    is_video: bool = False,
) -> list[float]:
    """The curiosity-shaped rewards of one query's group of rollouts (paper §4, eq. of r'):

        r'(x, y) = r(x, y) + α · max(H − RaPR(x), 0) · 1_PR(y) + β · min(N − n_vo(y), 0)

    with r = `correct` (0/1), n_vo = `n_ops`, 1_PR(y) = [n_vo(y) > 0], RaPR(x) the group's mean of 1_PR,
    H = `target_rate`, N = `max_ops`, α = `curiosity_coef`, β = `penalty_coef`. `form="released"` multiplies the
    curiosity term by 0.25/RaPR and, for videos (`is_video`), α by 4/3, as the released code did; in the paper form
    `is_video` changes nothing. The group must be complete (gathered across processes) for RaPR to be right.

    Worked values with G = 8 and the paper's constants (H 0.3, N 1, α 0.5, β 0.05): one pixel-space rollout among 8
    (RaPR 0.125) gets a bonus of 0.5 · (0.3 − 0.125) = +0.0875; two (RaPR 0.25) get +0.025 each; three or more get
    none. A rollout with 3 ops gets the penalty 0.05 · (1 − 3) = −0.1. The released form gives the lone pixel-space
    rollout 0.175 (0.0875 · 0.25/0.125), and two of them 0.025 each, as the paper's form does.
    """
    return shaped_reward_terms(
        correct,
        n_ops,
        target_rate=target_rate,
        max_ops=max_ops,
        curiosity_coef=curiosity_coef,
        penalty_coef=penalty_coef,
        form=form,
        is_video=is_video,
    ).total


_RECORD_KEYS = ("ops_requested", "ops_executed", "last_op_failed_unfixed", "ending")


def group_rewards(
    records: Sequence[Mapping],
    correct: Sequence[float],
    *,
    count_failed_ops: bool = False,
    zero_if_unfixed_error: bool = False,
    zero_if_truncated: bool = True,
    **shaped_kwargs,
) -> RewardTerms:
    """Shaped rewards of a group from its episode records; same breakdown as shaped_reward_terms.

    Two switches reproduce the released code's reward (both off by default, the paper's form):
    `count_failed_ops` counts op requests (failed and refused ones too, as the released code did) instead of
    executed ops. `zero_if_unfixed_error` zeroes the correctness of a rollout whose own last op failed unretried (the
    released code had this rule, but read each rollout's flag by its index within the group from the first group of
    the batch, so for every other group it used another query's flags). `zero_if_truncated` gives truncated episodes
    (cut off mid-turn by a token limit: nothing to score) a total of 0; they still count in RaPR. `pxr.training.rl` may also mask
    them out of the loss (`mask_truncated`).
    """
    records = list(records)
    for i, record in enumerate(records):
        missing = [key for key in _RECORD_KEYS if key not in record]
        if missing:
            raise ValueError(f"episode record {i} lacks {', '.join(missing)}")
    correctness = [float(c) for c in correct]
    if len(correctness) != len(records):
        raise ValueError(f"need one correctness per record, got {len(correctness)} for {len(records)} records")
    if zero_if_unfixed_error:
        correctness = [0.0 if rec["last_op_failed_unfixed"] else r for rec, r in zip(records, correctness, strict=True)]
    count_key = "ops_requested" if count_failed_ops else "ops_executed"
    terms = shaped_reward_terms(correctness, [rec[count_key] for rec in records], **shaped_kwargs)
    if not zero_if_truncated:
        return terms
    kept = [rec["ending"] != "truncated" for rec in records]

    def mask(values: list[float]) -> list[float]:
        return [v if keep else 0.0 for v, keep in zip(values, kept, strict=True)]

    return RewardTerms(
        mask(terms.correctness), mask(terms.curiosity), mask(terms.penalty), mask(terms.total), terms.rapr
    )


def curiosity_table(group_size: int = 8, **shaped_kwargs) -> list[dict]:
    """For k = 0..G single-op rollouts in a group: RaPR and the bonus each of them gets, in both forms."""
    shaped_kwargs.pop("form", None)  # the table shows every form side by side
    rows = []
    for k in range(group_size + 1):
        n_ops = [1] * k + [0] * (group_size - k)
        terms = {
            form: shaped_reward_terms([0] * group_size, n_ops, form=form, **shaped_kwargs) for form in REWARD_FORMS
        }
        rows.append(
            {
                "k": k,
                "rapr": terms["paper"].rapr,
                **{f"bonus_{form}": t.curiosity[0] if k else 0.0 for form, t in terms.items()},
            }
        )
    return rows
