"""Tests of pxr.reward: correctness matching and the curiosity-shaped group reward (paper §4, and the released
code's form)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pxr.reward import (
    RewardTerms,
    curiosity_table,
    group_rewards,
    group_table,
    is_correct,
    pixel_reasoning_rate,
    shaped_reward_terms,
    shaped_rewards,
)

OPTIONS = ["red", "blue", "green", "yellow"]
G = 8


def ops_with(k: int, ops: int = 1) -> list[int]:
    return [ops] * k + [0] * (G - k)


# ------------------------------------------------------------------------------------------------ RaPR


def test_pixel_reasoning_rate_counts_rollouts_with_ops():
    assert pixel_reasoning_rate([0, 2, 0, 1]) == pytest.approx(0.5)
    assert pixel_reasoning_rate([0, 0]) == 0.0
    assert pixel_reasoning_rate([5]) == 1.0


@pytest.mark.parametrize("n_ops", [[], [1, -1]])
def test_pixel_reasoning_rate_rejects_bad_groups(n_ops):
    with pytest.raises(ValueError):
        pixel_reasoning_rate(n_ops)


# ------------------------------------------------------------------------------- paper form (paper §4)


def test_one_pixel_rollout_gets_the_largest_bonus():
    rewards = shaped_rewards([1, 0, 0, 0, 0, 0, 0, 0], ops_with(1))
    assert rewards == pytest.approx([1.0875, 0, 0, 0, 0, 0, 0, 0])


def test_two_pixel_rollouts_get_a_small_bonus_each():
    rewards = shaped_rewards([0] * G, ops_with(2))
    assert rewards == pytest.approx([0.025, 0.025, 0, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("k", [3, 4, 8])
def test_three_or_more_pixel_rollouts_get_no_bonus(k):
    terms = shaped_reward_terms([1] * G, ops_with(k))
    assert terms.curiosity == pytest.approx([0.0] * G)
    assert terms.total == pytest.approx([1.0] * G)


def test_each_op_beyond_the_first_costs_beta():
    terms = shaped_reward_terms([1] * G, [3, 1, 0, 0, 0, 0, 0, 0])
    assert terms.penalty == pytest.approx([-0.1, 0, 0, 0, 0, 0, 0, 0])
    assert terms.curiosity == pytest.approx([0.025, 0.025, 0, 0, 0, 0, 0, 0])
    assert terms.total[0] == pytest.approx(1 + 0.025 - 0.1)
    assert terms.rapr == pytest.approx(0.25)


def test_rollouts_without_ops_get_neither_bonus_nor_penalty():
    terms = shaped_reward_terms([1, 0, 1, 0, 0, 0, 0, 0], ops_with(1))
    assert terms.curiosity[1:] == [0.0] * 7
    assert terms.penalty[1:] == [0.0] * 7
    assert terms.total[1:] == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_bonus_does_not_depend_on_correctness():
    assert shaped_reward_terms([0] * G, ops_with(1)).curiosity[0] == pytest.approx(0.0875)


def test_paper_form_ignores_is_video():
    assert shaped_rewards([0] * G, ops_with(1), is_video=True) == shaped_rewards([0] * G, ops_with(1))


def test_floats_are_accepted_as_correctness():
    assert shaped_rewards([1.0, 0.0], [0, 0]) == [1.0, 0.0]


def test_parameters_change_the_shape():
    terms = shaped_reward_terms([0] * 4, [2, 0, 0, 0], target_rate=0.5, max_ops=2, curiosity_coef=1.0)
    assert terms.curiosity[0] == pytest.approx(0.25)
    assert terms.penalty[0] == 0.0


def test_breakdown_sums_to_total():
    terms = shaped_reward_terms([1, 0, 1, 1, 0, 0, 1, 0], [4, 0, 1, 0, 0, 0, 0, 0])
    assert isinstance(terms, RewardTerms)
    for r, c, p, t in zip(terms.correctness, terms.curiosity, terms.penalty, terms.total, strict=True):
        assert t == pytest.approx(r + c + p)
    assert terms.total == shaped_rewards([1, 0, 1, 1, 0, 0, 1, 0], [4, 0, 1, 0, 0, 0, 0, 0])


# ------------------------------------------------------------------------------------------- ablations


def test_curiosity_off():
    terms = shaped_reward_terms([1] * G, [3] + [0] * 7, curiosity_coef=0.0)
    assert terms.curiosity == [0.0] * G
    assert terms.total[0] == pytest.approx(0.9)
    released = shaped_reward_terms([1] * G, [3] + [0] * 7, curiosity_coef=0.0, form="released", is_video=True)
    assert released.curiosity == [0.0] * G


def test_penalty_off():
    terms = shaped_reward_terms([1] * G, [3] + [0] * 7, penalty_coef=0.0)
    assert terms.penalty == [0.0] * G
    assert terms.total[0] == pytest.approx(1.0875)


# ------------------------------------------------------------------ released form (the released code)


@pytest.mark.parametrize(
    ("k", "is_video", "bonus"),
    [(1, False, 0.175), (1, True, 0.7 / 3), (2, False, 0.025), (2, True, 0.1 / 3), (3, False, 0.0), (3, True, 0.0)],
)
def test_released_form_bonus(k, is_video, bonus):
    terms = shaped_reward_terms([0] * G, ops_with(k), form="released", is_video=is_video)
    assert terms.curiosity[:k] == pytest.approx([bonus] * k)
    assert terms.curiosity[k:] == [0.0] * (G - k)


def test_released_form_penalty_matches_paper():
    n_ops = [5, 2, 1, 0, 0, 0, 0, 0]
    released = shaped_reward_terms([0] * G, n_ops, form="released")
    assert released.penalty == pytest.approx([-0.2, -0.05, 0, 0, 0, 0, 0, 0])
    assert released.penalty == shaped_reward_terms([0] * G, n_ops).penalty


def test_group_table_lists_each_rollouts_terms():
    correct, n_ops = [1, 1, 0, 0, 1, 0, 1, 0], [1, 3, 0, 0, 0, 0, 0, 0]
    terms = shaped_reward_terms(correct, n_ops)
    rows = group_table(terms, n_ops)
    assert [r["rollout"] for r in rows] == list(range(1, 9))
    assert rows[0] == {"rollout": 1, "correct": 1.0, "ops": 1, "curiosity": pytest.approx(0.025), "penalty": 0.0,
                       "reward": pytest.approx(1.025)}  # fmt: skip
    assert rows[1]["penalty"] == pytest.approx(-0.1) and rows[1]["reward"] == pytest.approx(0.925)
    assert rows[2] == {"rollout": 3, "correct": 0.0, "ops": 0, "curiosity": 0.0, "penalty": 0.0, "reward": 0.0}
    with pytest.raises(ValueError):
        group_table(terms, n_ops[:-1])  # one op count per rollout


def test_curiosity_table():
    rows = curiosity_table()
    assert [row["k"] for row in rows] == list(range(9))
    assert rows[0] == {"k": 0, "rapr": 0.0, "bonus_paper": 0.0, "bonus_released": 0.0}
    assert rows[1]["rapr"] == pytest.approx(0.125)
    assert (rows[1]["bonus_paper"], rows[1]["bonus_released"]) == pytest.approx((0.0875, 0.175))
    assert (rows[2]["bonus_paper"], rows[2]["bonus_released"]) == pytest.approx((0.025, 0.025))
    assert all(row["bonus_paper"] == row["bonus_released"] == 0.0 for row in rows[3:])
    assert curiosity_table(is_video=True)[1]["bonus_released"] == pytest.approx(0.7 / 3)
    assert len(curiosity_table(group_size=4)) == 5


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("correct", "n_ops", "kwargs", "message"),
    [
        ([1, 0], [0], {}, "one entry per rollout"),
        ([], [], {}, "non-empty"),
        ([1], [-1], {}, "non-negative"),
        ([1], [0], {"form": "verl"}, "unknown reward form"),
    ],
)
def test_shaped_rewards_validation(correct, n_ops, kwargs, message):
    with pytest.raises(ValueError, match=message):
        shaped_rewards(correct, n_ops, **kwargs)


# -------------------------------------------------- episode records (the released code's switches)


def record(requested=0, executed=0, failed=0, unfixed=False, ending="answer"):
    return {
        "ops_requested": requested,
        "ops_executed": executed,
        "ops_failed": failed,
        "last_op_failed_unfixed": unfixed,
        "ending": ending,
    }


def test_group_rewards_counts_executed_ops_by_default():
    # Rollout 0 only ever made a failing call: not pixel-space reasoning unless requests are counted.
    records = [record(requested=1, failed=1)] + [record()] * 7
    terms = group_rewards(records, [1] * G)
    assert terms.rapr == 0.0
    assert terms.total == [1.0] * G


def test_group_rewards_count_failed_ops_counts_requests():
    records = [record(requested=3, executed=1, failed=2)] + [record()] * 7
    default = group_rewards(records, [0] * G)
    assert default.curiosity[0] == pytest.approx(0.0875)
    assert default.penalty[0] == 0.0
    counted = group_rewards(records, [0] * G, count_failed_ops=True)
    assert counted.curiosity[0] == pytest.approx(0.0875)
    assert counted.penalty[0] == pytest.approx(-0.1)


def test_zero_if_unfixed_error_reads_each_rollouts_own_flag():
    records = [record(requested=1, executed=1)] * G
    records[3] = record(requested=2, executed=1, failed=1, unfixed=True)
    correct = [1, 1, 1, 1, 0, 0, 1, 1]
    assert group_rewards(records, correct).correctness == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    zeroed = group_rewards(records, correct, zero_if_unfixed_error=True)
    assert zeroed.correctness == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert zeroed.total[3] == 0.0  # RaPR 1: no bonus, one executed op: no penalty


def test_group_rewards_passes_shaping_arguments():
    records = [record(requested=1, executed=1)] + [record()] * 7
    terms = group_rewards(records, [0] * G, form="released", is_video=True)
    assert terms.curiosity[0] == pytest.approx(0.7 / 3)


def test_truncated_episodes_get_zero_but_count_in_rapr():
    records = [record(requested=2, executed=2, ending="truncated"), record(requested=1, executed=1)] + [record()] * 6
    terms = group_rewards(records, [1, 1] + [0] * 6)
    assert terms.rapr == pytest.approx(0.25)
    assert terms.total[:2] == pytest.approx([0.0, 1.025])
    kept = group_rewards(records, [1, 1] + [0] * 6, zero_if_truncated=False)
    assert kept.total[0] == pytest.approx(1 + 0.025 - 0.05)


def test_group_rewards_validation():
    with pytest.raises(ValueError, match="lacks ops_executed"):
        group_rewards([{"ops_requested": 1, "last_op_failed_unfixed": False, "ending": "answer"}], [1])
    with pytest.raises(ValueError, match="one correctness per record"):
        group_rewards([record(), record()], [1])


# -------------------------------------------------------------------------------------------- is_correct


@pytest.mark.parametrize(
    ("response", "answer", "options", "expected"),
    [
        ("B", "B", None, True),
        ("(B)", "B", None, True),
        ("B.", "(B)", None, True),
        ("B. red", "B", None, True),
        ("B) red", "B", None, True),
        ("b", "B", None, True),
        ("C", "B", None, False),
        ("A cat", "A", None, False),
        ("B) blue", "B", OPTIONS, True),
        ("blue", "B", OPTIONS, True),
        ("Blue.", "B", OPTIONS, True),
        ("B", "blue", OPTIONS, True),
        ("red", "B", OPTIONS, False),
        ("Looking closer, the car is blue. \\boxed{B}", "B", OPTIONS, True),
        ("The answer is (B) blue.", "B", OPTIONS, True),
        ("I zoomed in and the sign is blue, so \\boxed{green}", "B", OPTIONS, False),
    ],
)
def test_is_correct_multiple_choice(response, answer, options, expected):
    assert is_correct(response, answer, options=options) is expected
    assert is_correct(response, answer, kind="mc", options=options) is expected


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("3", 3, True),
        ("3.0", "3", True),
        ("+3", 3, True),
        ("three", 3, True),
        ("Three", "3", True),
        ("3", "three", True),
        ("1,000", "1000", True),
        ("1000", 1000.0, True),
        ("45%", "45", True),
        ("45", "45%", True),
        ("\\boxed{45\\%}", 45, True),
        ("twenty-one", 21, True),
        ("twenty one", 21, True),
        ("ninety", 90, True),
        ("a dozen", 12, True),
        ("12", "a dozen", True),
        ("3.0000001", 3, True),
        ("3.01", 3, False),
        ("twenty zero", 20, False),
        ("3 cars", 3, True),
        ("There are 3.", 3, True),
        ("There are three cars.", 3, True),
        ("0", 0, True),
        ("zero", "0", True),
        ("0.3333333", "0.33333333", True),
        ("4", 3, False),
        ("3.5", 35, False),
        ("3 or 4", 3, False),
        ("There are 3 cars and 4 bikes.", 3, False),
        ("thirty", 3, False),
        ("1,000", 1, False),
        ("I counted the cars in the picture carefully and there are 3", 3, False),
    ],
)
def test_is_correct_numbers(response, answer, expected):
    assert is_correct(response, answer) is expected
    assert is_correct(response, answer, kind="number") is expected


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("The Red Car.", "red car", True),
        ("red car", "The red car", True),
        ("  a  RED,  car ", "red car", True),
        ("\\boxed{\\text{Red car}}", "red car", True),
        ("\\text{red car}", "red car", True),
        ("red truck", "red car", False),
        ("redcar", "red car", False),
        ("", "red car", False),
        ("\\boxed{}", "red car", False),
        ("the", "a", False),
    ],
)
def test_is_correct_text(response, answer, expected):
    assert is_correct(response, answer) is expected
    assert is_correct(response, answer, kind="text") is expected


def test_is_correct_reads_the_last_boxed_answer_of_a_reasoning_text():
    response = (
        "The car is small, so I zoom in.\n<tool_call>{...}</tool_call>\nNow I can see the plate: it reads "
        "\\boxed{7} at first glance, but looking again the digit is \\boxed{1}."
    )
    assert is_correct(response, 1)
    assert not is_correct(response, 7)


def test_is_correct_without_an_answer_is_false():
    long_reasoning = "Let me think about the colours in the image. The car on the left looks red, maybe."
    assert not is_correct(long_reasoning, "red")
    assert not is_correct("red\nor blue", "red")


def test_is_correct_accepts_any_of_several_answers():
    assert is_correct("\\boxed{crimson}", ["red", "crimson"])
    assert is_correct("\\boxed{3}", ("three", "several"))
    assert is_correct("\\boxed{45%}", [44, 45])
    assert not is_correct("\\boxed{blue}", ["red", "crimson"])
    assert not is_correct("\\boxed{blue}", [])


def test_is_correct_auto_falls_back_to_text_for_numbers_only_in_auto():
    # "3-4" is no single number, yet equals the gold as text.
    assert is_correct("3-4", "3-4")
    assert not is_correct("3-4", "3-4", kind="number")


def test_is_correct_explicit_kind_overrides_auto():
    assert is_correct("B", "b", kind="text")
    assert not is_correct("B. red", "B", kind="text")
    assert is_correct("B. red", "B", kind="mc")


def test_is_correct_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown answer kind"):
        is_correct("3", 3, kind="fuzzy")


def test_is_correct_rejects_unusable_gold():
    with pytest.raises(TypeError):
        is_correct("3", None)


# ---------------------------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(
    response=st.text(max_size=200),
    answer=st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=True), st.lists(st.text(max_size=5))),
    kind=st.sampled_from(["auto", "mc", "number", "text"]),
    options=st.one_of(st.none(), st.lists(st.text(max_size=10), max_size=5)),
)
@pytest.mark.slow
def test_is_correct_never_raises(response, answer, kind, options):
    assert isinstance(is_correct(response, answer, kind=kind, options=options), bool)


@settings(max_examples=200, deadline=None)
@given(
    group=st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=1, max_size=16),
    target_rate=st.floats(0, 1),
    max_ops=st.integers(0, 3),
    alpha=st.floats(0, 2),
    beta=st.floats(0, 1),
)
@pytest.mark.slow
def test_paper_rewards_are_bounded(group, target_rate, max_ops, alpha, beta):
    correct, n_ops = [float(c) for c, _ in group], [n for _, n in group]
    rewards = shaped_rewards(
        correct, n_ops, target_rate=target_rate, max_ops=max_ops, curiosity_coef=alpha, penalty_coef=beta
    )
    for r, n, shaped in zip(correct, n_ops, rewards, strict=True):
        assert r - beta * max(n - max_ops, 0) - 1e-12 <= shaped <= r + alpha * target_rate + 1e-12
        if n == 0:
            assert shaped == r
