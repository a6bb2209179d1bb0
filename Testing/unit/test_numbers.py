"""parse_number and the argparse number types: any notation, units where natural, clear refusals."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.volume.numbers import collect_number, integer_type, number_type, parse_number


@pytest.mark.parametrize("value,options,expected", [
    ("7.4e9", {}, 7.4e9),
    ("7.4E+9", {}, 7.4e9),
    (" 2e6 ", {}, 2e6),
    ("7_400_000_000", {}, 7.4e9),
    ("-1e3", {}, -1000.0),
    (".5", {}, 0.5),
    ("5.", {}, 5.0),
    (7, {}, 7.0),
    (np.float32(0.5), {}, 0.5),
    ("7.4 GBq", {"unit": "Bq"}, 7.4e9),
    ("7400MBq", {"unit": "Bq"}, 7.4e9),
    ("7.4e9", {"unit": "Bq"}, 7.4e9),
    ("24 h", {"unit": "h"}, 24.0),
    ("1 d", {"unit": "h"}, 24.0),
    ("90 min", {"unit": "h"}, 1.5),
    ("0.5 min", {"unit": "s"}, 30.0),
    ("6 mm", {"unit": "mm"}, 6.0),
    ("0.6 cm", {"unit": "mm"}, 6.0),
    ("2 cc", {"unit": "mL"}, 2.0),
    ("2000 cGy", {"unit": "Gy"}, 20.0),
    ("1 %", {"unit": "1"}, 0.01),
])
def test_numbers_in_any_notation(value, options, expected):
    result = parse_number(value, name="x", **options)
    assert isinstance(result, float) and result == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("value,expected", [("2e6", 2_000_000), ("1e4", 10_000), (1e4, 10_000), ("2_000", 2000),
                                            (np.int64(3), 3), ("12345678901234567890", 12345678901234567890)])
def test_integers_accept_exactly_integral_values(value, expected):
    result = parse_number(value, name="dose.histories", integer=True, positive=True)
    assert isinstance(result, int) and result == expected


@pytest.mark.parametrize("value,options,reason", [
    (True, {}, "yes/no"),
    ("nan", {}, "NaN"),
    (float("inf"), {}, "NaN"),
    ("-inf", {}, "NaN"),
    ("abc", {}, "not a number"),
    ("", {}, "not a number"),
    ("1e4x", {"integer": True}, "not a number"),
    ("7,4", {}, "decimal mark"),
    ("2.5e0", {"integer": True}, "not a whole number"),
    ("7.4 GBq", {}, "without a unit"),
    ("7 Gy", {"unit": "Bq"}, "not a unit of Bq"),
    ("7 parsecs", {"unit": "Bq"}, "unknown unit"),
    ("-1", {"positive": True}, "not positive"),
    ("0", {"integer": True, "positive": True}, "not positive"),
    ("150", {"minimum": 0, "maximum": 100}, "above 100"),
    ("1e999", {}, "too large"),
    (None, {}, "missing"),
    ([1], {}, "list"),
])
def test_refusals_name_the_setting_the_value_and_an_example(value, options, reason):
    with pytest.raises(InputFormatError) as error:
        parse_number(value, name="dose.histories", **options)
    message = str(error.value)
    assert message.startswith("dose.histories must be") and repr(value) in message
    assert reason in message and "Example: " in message


def test_optional_none_and_collected_problems():
    assert parse_number(None, name="x", optional=True) is None
    problems = []
    assert collect_number("7.4e9", problems, name="a", unit="Bq") == 7.4e9
    assert collect_number("lots", problems, name="b", unit="Bq") == "lots"  # left as given
    assert len(problems) == 1 and problems[0].startswith("b must be a number in Bq; got 'lots'")
    assert "7.4 GBq" in problems[0]


def test_argparse_types():
    parser = argparse.ArgumentParser()
    parser.add_argument("--histories", type=integer_type(positive=True))
    parser.add_argument("--time-h", type=number_type("h", positive=True), action="append")
    args = parser.parse_args(["--histories", "2e6", "--time-h", "4", "--time-h", "1 d"])
    assert args.histories == 2_000_000 and args.time_h == [4.0, 24.0]
    with pytest.raises(argparse.ArgumentTypeError, match=r"positive whole number; got '2\.5e6x' \(not a number\)"):
        integer_type(positive=True)("2.5e6x")
    with pytest.raises(argparse.ArgumentTypeError, match="not a whole number"):
        integer_type()("2.5")
