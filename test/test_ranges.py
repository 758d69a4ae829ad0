"""The integer-range parser behind every --years / --months option and the generator's year and month questions."""
import pytest

from video_prediction_tools.utils.errors import UserError
from video_prediction_tools.utils.ranges import parse_int_ranges


@pytest.mark.parametrize("tokens, expected", [
    (["2017", "2019-2020"], [2017, 2019, 2020]),          # command-line tokens
    ("1-3, 12", [1, 2, 3, 12]),                           # a typed answer: commas and spaces
    ("12,1 3-4,,2", [1, 2, 3, 4, 12]),                    # sorted, whatever the order
    (["1-3", "2-4", "3"], [1, 2, 3, 4]),                  # overlaps counted once
    (2017, [2017]),                                       # a YAML answer read as a number
    ([1, "5-6"], [1, 5, 6]),
    ("7-7", [7]),
])
def test_expansion(tokens, expected):
    assert parse_int_ranges(tokens, "--years", 1, 2200) == expected


@pytest.mark.parametrize("tokens, bad", [
    (["13"], "13"),                     # above the upper bound
    ("0", "0"),                         # below the lower bound
    ("3-1", "3-1"),                     # descending range
    ("1-2-3", "1-2-3"),
    ("x, 2, 1.5, -1", "x, 1.5, -1"),    # every bad element at once, in the order given
])
def test_bad_elements_are_all_named(tokens, bad):
    with pytest.raises(UserError) as err:
        parse_int_ranges(tokens, "--months", 1, 12)
    assert str(err.value) == (f"invalid --months: {bad} (expected integers or ascending ranges like 1-3, "
                              "within 1..12)")


@pytest.mark.parametrize("tokens", ["", " , ", []])
def test_nothing_given_is_an_error(tokens):
    with pytest.raises(UserError, match="^no months given$"):
        parse_int_ranges(tokens, "months", 1, 12)
