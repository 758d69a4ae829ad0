"""Integer lists written as ranges, the one parser behind every ``--years`` / ``--months`` option and the
generator's year and month questions.

Example::

    from video_prediction_tools.utils.ranges import parse_int_ranges
    parse_int_ranges(["2017", "2019-2020"], "--years", 1900, 2200)   # [2017, 2019, 2020]
    parse_int_ranges("1-3, 12", "months", 1, 12)                      # [1, 2, 3, 12]
    parse_int_ranges("13", "--months", 1, 12)   # UserError: invalid --months: 13 (expected integers or ...)
"""
from __future__ import annotations

import re
from typing import Sequence

from .errors import UserError

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def parse_int_ranges(tokens: str | int | Sequence[str | int], what: str, low: int, high: int) -> list[int]:
    """Expand ``"1-3, 7"`` or ``["2017", "2019-2020"]`` into the sorted list of unique integers they name.

    Elements are separated by commas and/or whitespace; each is an integer or an ascending range ``a-b``, and
    every value must lie in [low, high]. ``what`` names the option or question in the error, which lists every
    bad element at once (so a user fixes them in one go); an empty input is an error too.
    """
    text = " ".join(map(str, tokens)) if isinstance(tokens, (list, tuple)) else str(tokens)
    values: set[int] = set()
    bad: list[str] = []
    for item in (item for item in re.split(r"[,\s]+", text.strip()) if item):
        match = _RANGE.fullmatch(item)
        first, last = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else (1, 0)
        if not low <= first <= last <= high:
            bad.append(item)
            continue
        values.update(range(first, last + 1))
    if bad:
        raise UserError(f"invalid {what}: {', '.join(bad)} (expected integers or ascending ranges like 1-3, "
                        f"within {low}..{high})")
    if not values:
        raise UserError(f"no {what} given")
    return sorted(values)
