"""pxr.scoring on literal cases: option letters and option text, numbers, exact text, ANLS and its threshold."""

import pytest

from pxr.protocol import final_answer
from pxr.scoring import anls, levenshtein, score_response

OPTIONS = ["red", "green", "blue", "yellow"]


@pytest.mark.parametrize(
    "response, answer, expected",
    [
        ("The bag is blue. \\boxed{C}", "C", 1.0),
        ("\\boxed{(C)}", "C", 1.0),
        ("\\boxed{blue}", "C", 1.0),  # the option's text names its letter
        ("\\boxed{C. blue}", "C", 1.0),
        ("\\boxed{B}", "C", 0.0),
        ("\\boxed{green}", "C", 0.0),
        ("\\boxed{C}", "blue", 1.0),  # a gold written as option text
        ("C", "C", 1.0),  # a short bare reply
        ("I cannot tell.", "C", 0.0),
    ],
)
def test_multiple_choice(response, answer, expected):
    assert score_response(response, answer, "mc", OPTIONS) == expected


@pytest.mark.parametrize(
    "response, answer, expected",
    [
        ("\\boxed{3}", "3", 1.0),
        ("\\boxed{three}", "3", 1.0),
        ("There are 3 cars. \\boxed{3 cars}", "3", 1.0),
        ("\\boxed{3.0}", 3, 1.0),
        ("\\boxed{4}", "3", 0.0),
        ("\\boxed{13}", "3", 0.0),
        ("no boxed answer but a long explanation mentioning 3 twice and 3 again", "3", 0.0),
    ],
)
def test_counting(response, answer, expected):
    assert score_response(response, answer, "number") == expected


def test_text_and_several_gold_answers():
    assert score_response("\\boxed{The Cat}", "cat", "text") == 1.0
    assert score_response("\\boxed{dog}", ["cat", "dog"], "text") == 1.0
    assert score_response("\\boxed{cats}", "cat", "text") == 0.0


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3 and levenshtein("abc", "abc") == 0


@pytest.mark.parametrize(
    "prediction, golds, expected",
    [
        ("london", ["London"], 1.0),  # case and spaces are normalized
        ("  New   York ", ["new york"], 1.0),
        ("londn", ["london"], 1 - 1 / 6),  # NL = 1/6 < 0.5
        ("abcd", ["abef"], 0.5),  # NL = 2/4 = 0.5: 1 - NL = 0.5 is not below τ, so it is kept (official rule)
        ("12", ["13"], 0.5),
        ("abcde", ["abfgh"], 0.0),  # NL = 3/5: 0.4 < τ
        ("  londn  ", ["london"], 1 - 1 / 9),  # distance of the normalized strings over the raw length 9
        ("abc", ["abd"], 1 - 1 / 3),
        ("xyz", ["abc"], 0.0),
        ("paris", ["london", "pariss"], 1 - 1 / 6),  # max over golds
        (None, ["x"], 0.0),
    ],
)
def test_anls_literal_cases(prediction, golds, expected):
    assert anls(prediction, golds) == pytest.approx(expected)


def test_anls_threshold_parameter_and_scoring_from_a_response():
    assert anls("abcd", "abef", threshold=0.6) == 0.0
    assert anls("abcd", "abef", threshold=0.5) == 0.5
    assert score_response("The answer is shown. \\boxed{Londn}", ["london"], "anls") == pytest.approx(5 / 6)
    assert score_response("Londn", ["london"], "anls") == pytest.approx(5 / 6)  # a short bare reply
    assert score_response(None, "x", "anls") == 0.0
    assert final_answer("long text " * 10) is None


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown answer kind"):
        score_response("x", "x", "fuzzy")
