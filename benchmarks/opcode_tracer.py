"""Run a Python program with a bytecode counter that signals switch on and off.

    python opcode_tracer.py OUT_DIR PROGRAM [ARGS ...]

PROGRAM runs as `__main__` in this interpreter. SIGUSR1 starts counting, in the main thread
(`sys.settrace`, with `f_trace_opcodes` on every frame entered or resumed from then on);
SIGUSR2 stops and writes OUT_DIR/opcodes.N.tsv (N: 1, 2, ... per window), one line per code
object: bytecodes run, frames entered or resumed (a coroutine's resumption counts, as
`sys.settrace` sees it), file:first line, qualified name. `benchmarks/opcodes.py` drives it.
"""

from __future__ import annotations

import collections
import os
import runpy
import signal
import sys
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

_bytecodes: collections.Counter[CodeType] = collections.Counter()
_frames: collections.Counter[CodeType] = collections.Counter()
_windows = 0


def _count(frame: FrameType, event: str, _: Any) -> Any:
    if event == "opcode":
        _bytecodes[frame.f_code] += 1
    return _count


def _enter(frame: FrameType, _event: str, _arg: Any) -> Any:
    frame.f_trace_opcodes = True
    _frames[frame.f_code] += 1
    return _count


def _start(_signal: int, _frame: object) -> None:
    _bytecodes.clear()
    _frames.clear()
    sys.settrace(_enter)


def _stop(_signal: int, _frame: object) -> None:
    global _windows
    sys.settrace(None)
    _windows += 1
    path = _out / f"opcodes.{_windows}.tsv"
    partial = path.with_suffix(".partial")
    with partial.open("w") as out:
        for code, count in _bytecodes.most_common():
            where = f"{code.co_filename}:{code.co_firstlineno}"
            out.write(f"{count}\t{_frames[code]}\t{where}\t{code.co_qualname}\n")
    os.replace(partial, path)  # whole, or not there yet


if __name__ == "__main__":
    _out = Path(sys.argv[1])
    sys.argv = sys.argv[2:]
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    runpy.run_path(sys.argv[0], run_name="__main__")
