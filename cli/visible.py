"""What the API answers is shown as text, never as terminal instructions.

Anyone can put text into what the admin later reads: an OAuth client's name (open
registration), a `client_id` sent to `/token` (the request log keeps it), an owner's route and
service descriptions, a container's output. A terminal obeys the control characters in it: ESC
and the C1 controls start sequences that clear the screen, hide or forge lines, make links
(OSC 8) or write the clipboard (OSC 52: the admin's next paste runs the attacker's command), and
bidirectional overrides reorder what is read. So every string from the API is shown with those
characters spelled out (`\\x1b`): in tables, notes, log lines, errors and CSV on a terminal.
JSON and YAML keep the data exact, as their own escapes (`\\u001b`).
"""

from __future__ import annotations

import re
from typing import Any

_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""C0 controls but tab and newline, DEL, C1 controls, and the bidirectional embeddings,
overrides and isolates."""


def _spelled(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


_LINE_BREAKING = re.compile("[\t\n\u2028\u2029]")
"""What `_CONTROLS` leaves that breaks or moves a line: tab, newline, and Unicode's line and
paragraph separators."""


def visible(text: str) -> str:
    """`text` with every control character spelled out."""
    return _CONTROLS.sub(_spelled, text)


def one_line(text: str) -> str:
    """`visible`, and tab and line breaks spelled out too: for output read line by line (a log
    line), where a newline from a client would start a line of its own choosing."""
    return _LINE_BREAKING.sub(_spelled, visible(text))


def visible_data(data: Any) -> Any:
    """`data` (parsed JSON) with `visible` applied to every string, keys included."""
    if isinstance(data, str):
        return visible(data)
    if isinstance(data, list):
        return [visible_data(item) for item in data]
    if isinstance(data, dict):
        return {visible(str(key)): visible_data(value) for key, value in data.items()}
    return data


def has_controls(data: Any) -> bool:
    """Whether any string in `data` (parsed JSON) holds a control character."""
    if isinstance(data, str):
        return _CONTROLS.search(data) is not None
    if isinstance(data, list):
        return any(has_controls(item) for item in data)
    if isinstance(data, dict):
        return any(has_controls(str(key)) or has_controls(value) for key, value in data.items())
    return False


def json_escaped(text: str) -> str:
    """JSON text with the control characters JSON leaves raw (DEL, C1, bidi) as `\\uXXXX`:
    they occur only inside strings, so the document and its data stay the same."""
    return _CONTROLS.sub(lambda match: f"\\u{ord(match[0]):04x}", text)
