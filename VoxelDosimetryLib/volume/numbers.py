"""Numbers written by people: config values and CLI flags in any notation, with a unit where natural.

parse_number accepts ints, floats and numeric text: '7.4e9', '7.4E+9', '1e4', ' 2e6 ', '7_400_000_000', and,
when the setting has a unit, a value with its own unit converted by the unit registry (volume/units.py):
'7.4 GBq' -> 7.4e9 for unit='Bq', '1 d' -> 24 for unit='h', '2 min' -> 120 for unit='s'. PyYAML (YAML 1.1)
reads `7.4e9` and `1e4` as strings, so every numeric setting goes through here. Booleans, NaN, infinity and
other text are refused with an InputFormatError naming the setting, the value and a valid example.
number_type and integer_type give argparse `type=` callables with the same rules.
"""
from __future__ import annotations

import argparse
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, UnitError
from VoxelDosimetryLib.volume.units import canonical_unit, conversion_factor

# a decimal number, optionally with '_' between digits and an exponent; the rest of the text is its unit
_NUMBER = re.compile(r"[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d+)?")

# a valid value per unit, shown in error messages
_EXAMPLES = {
    "Bq": "7.4e9 or '7.4 GBq'", "MBq": "7400 or '7.4 GBq'", "h": "24 or '1 d'", "s": "30 or '0.5 min'",
    "mm": "4.8 or '0.48 cm'", "Gy": "20 or '2000 cGy'", "mL": "2 or '2 cc'", "HU": "-1000",
    "1": "0.01 or '1 %'", "g/cm3": "0.05", "Bq*s": "3.6e12 or '1000 MBq*h'", "MBq*h": "1000",
}


class _Invalid(Exception):
    """Why a value is not acceptable (turned into InputFormatError or argparse.ArgumentTypeError)."""


def parse_number(value: Any, *, name: str, unit: str | None = None, integer: bool = False, positive: bool = False,
                 minimum: float | None = None, maximum: float | None = None, optional: bool = False,
                 example: str | None = None) -> float | int | None:
    """`value` as a float (an int when integer=True) in `unit`; raises InputFormatError naming `name`.

    unit: the setting's unit (e.g. 'Bq', 'h'); text may then carry its own compatible unit ('7.4 GBq').
    Without a unit, text with a unit is refused. integer: only exactly integral values ('2e6', 1e4 as float).
    positive: > 0; minimum/maximum: inclusive bounds. optional: None gives None instead of an error.
    """
    if value is None and optional:
        return None
    try:
        return _parse(value, unit, integer, positive, minimum, maximum)
    except _Invalid as exc:
        raise InputFormatError(f"{name} {exc}. Example: {example or _example(unit, integer)}.") from None


def collect_number(value: Any, problems: list, **options: Any) -> Any:
    """parse_number(value, **options), but a problem is appended to `problems` and `value` returned unchanged."""
    try:
        return parse_number(value, **options)
    except InputFormatError as exc:
        problems.append(str(exc).rstrip("."))
        return value


def number_type(unit: str | None = None, *, integer: bool = False, positive: bool = False,
                minimum: float | None = None, maximum: float | None = None,
                example: str | None = None) -> Callable[[str], float | int]:
    """An argparse `type=` accepting what parse_number accepts (e.g. '2e6', '7.4 GBq' for unit='MBq')."""

    def convert(text: str) -> float | int:
        try:
            return _parse(text, unit, integer, positive, minimum, maximum)
        except _Invalid as exc:
            raise argparse.ArgumentTypeError(f"{exc}. Example: {example or _example(unit, integer)}") from None

    convert.__name__ = "integer" if integer else "number"
    return convert


def integer_type(*, positive: bool = False, minimum: float | None = None, maximum: float | None = None,
                 example: str | None = None) -> Callable[[str], int]:
    """An argparse `type=` for whole numbers in any notation ('2e6', '2_000_000', '2000000')."""
    return number_type(integer=True, positive=positive, minimum=minimum, maximum=maximum, example=example)


def _parse(value: Any, unit: str | None, integer: bool, positive: bool, minimum: float | None,
           maximum: float | None) -> float | int:
    """The checked value, or _Invalid saying what is wrong ('must be ...; got ...')."""
    wanted = _wanted(unit, integer, positive, minimum, maximum)

    def invalid(reason: str = "") -> _Invalid:
        return _Invalid(f"must be {wanted}; got {value!r}" + (f" ({reason})" if reason else ""))

    if isinstance(value, (bool, np.bool_)):
        raise invalid("a yes/no value is not a number")
    if value is None:
        raise invalid("missing")
    if isinstance(value, str):
        number, given_unit = _split(value, invalid)
    elif isinstance(value, (int, np.integer)):
        number, given_unit = Decimal(int(value)), None
    elif isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise invalid("NaN and infinity are not allowed")
        number, given_unit = Decimal(repr(float(value))), None
    else:
        raise invalid(f"a {type(value).__name__} is not a number")
    if given_unit is not None:
        try:
            canonical_unit(given_unit)
        except UnitError:
            raise invalid("not a number" if unit is None else f"unknown unit {given_unit!r}") from None
        if unit is None:
            raise invalid("this setting takes a plain number without a unit")
        try:
            factor = conversion_factor(given_unit, unit)
        except UnitError:
            raise invalid(f"{given_unit!r} is not a unit of {unit}") from None
        number *= Decimal(repr(factor))
    if not math.isfinite(float(number)):
        raise invalid("too large")
    if integer and number != number.to_integral_value():
        raise invalid("not a whole number")
    if positive and not number > 0:
        raise invalid("not positive")
    if minimum is not None and number < Decimal(repr(minimum)):
        raise invalid(f"below {minimum:g}")
    if maximum is not None and number > Decimal(repr(maximum)):
        raise invalid(f"above {maximum:g}")
    return int(number) if integer else float(number)


def _split(text: str, invalid: Callable[[str], _Invalid]) -> tuple[Decimal, str | None]:
    """(number, unit text or None) of a numeric string such as ' 7.4e9 ', '7_400', '7.4 GBq'."""
    cleaned = text.strip().replace("\u2212", "-")  # a typographic minus sign
    match = _NUMBER.match(cleaned)
    if not match:
        lowered = cleaned.lower().lstrip("+-")
        if lowered in ("nan", "inf", "infinity"):
            raise invalid("NaN and infinity are not allowed")
        raise invalid("not a number")
    rest = cleaned[match.end():].strip()
    if rest[:1] == ",":
        raise invalid("write the decimal mark as '.', without thousands separators")
    try:
        number = Decimal(match.group().replace("_", ""))
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        raise invalid("not a number") from None
    return number, (rest or None)


def _wanted(unit: str | None, integer: bool, positive: bool, minimum: float | None, maximum: float | None) -> str:
    """'a positive whole number', 'a number >= 0 in Gy', ..."""
    text = ("a positive " if positive else "a ") + ("whole number" if integer else "number")
    bounds = ([f">= {minimum:g}"] if minimum is not None else []) + ([f"<= {maximum:g}"] if maximum is not None else [])
    if bounds:
        text += " " + " and ".join(bounds)
    if unit is not None and unit != "1":
        text += f" in {unit}"
    return text


def _example(unit: str | None, integer: bool) -> str:
    if integer:
        return "1e6 (= 1000000)"
    if unit is None:
        return "2.5e3"
    return _EXAMPLES.get(unit, f"1.5 or '1.5 {unit}'")
