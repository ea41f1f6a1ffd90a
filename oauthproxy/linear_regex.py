"""Regular expressions that owners supply (route `path_pattern`s), on RE2.

Python's `re` backtracks: `(a+)+$` against a long run of `a`s takes exponential time, and a
route regex runs on the event loop for every request to its proxy, so one owner's route could
hang every tenant and the admin API. RE2 (PyPI `google-re2`) runs in time linear in the input,
whatever the pattern; it has no lookaround and no backreferences, so patterns that use them are
refused when the route is created, with the engine's reason. Used by the route model (to
validate) and the route table (to match), so both agree on what a pattern means.

Linear in the input is not enough on its own: the time is the input's length times the
pattern's compiled size, and counted repetitions compile to one instruction per count
(`.*` then eight `[^z].{1000}` is 91 characters and 64,077 instructions: RE2's DFA runs out of
memory on it and its fallback took 3.6 s per 60 KB path, on the event loop every tenant
shares). Nor is a bounded size: a DFA that needs exponentially many states (`.*a[ab]{90}c`
and its kin) falls back to the slower matcher at any size, ~6 ns per instruction and byte of
path (207 instructions, a 4 KiB path: 5 ms). So three bounds: a pattern compiles to at most
`MAX_PROGRAM_SIZE` instructions, one owner's regex routes to at most `OWNER_PROGRAM_BUDGET`
together (`tenancy.records.check_regex_budget`), and a regex is matched only against a path of
at most `MAX_MATCHED_PATH` bytes (a longer one matches no regex route). A request then costs at
most ~12 ms of regex work, whatever an owner writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import re2

if TYPE_CHECKING:
    Regex: TypeAlias = re2._Regexp[str]
else:
    Regex = re2._Regexp

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is the caller's error, not a line on stderr
_OPTIONS.max_mem = 8 << 20
"""Bounds the memory one compiled pattern may use (RE2 falls back to a slower linear matcher)."""


MAX_PROGRAM_SIZE = 1000
"""RE2 instructions one pattern may compile to (`^/items/[0-9]+$`: 6; a UUID segment: ~130)."""

OWNER_PROGRAM_BUDGET = 2000
"""RE2 instructions one owner's regex routes may compile to together (the routes a request to
one of its proxies may run)."""

MAX_MATCHED_PATH = 1024
"""The longest path a regex route is matched against; a longer one matches no regex route."""


def compile_linear(pattern: str) -> Regex:
    """`pattern` compiled for RE2, or ValueError saying why it is refused (RE2's reason, or a
    compiled size over `MAX_PROGRAM_SIZE`)."""
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else error
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise ValueError(
            f"not a regular expression RE2 (the linear-time engine routes run on) accepts: "
            f"{reason}; RE2 has no lookaround and no backreferences"
        ) from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise ValueError(
            f"too complex for a route: it compiles to {compiled.programsize} instructions, at "
            f"most {MAX_PROGRAM_SIZE}; a counted repetition such as {{1,255}} compiles to one "
            "instruction per count: use + or * instead"
        )
    return compiled
