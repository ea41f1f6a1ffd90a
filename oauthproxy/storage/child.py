"""A child process that can never outlive the gateway, even when the gateway is SIGKILLed.

Linux's parent-death signal (`prctl(PR_SET_PDEATHSIG)`) does it, with two traps avoided here:

- It fires when the *thread* that forked the child ends, not the process. trio's
  `open_process` forks from a worker thread, and worker threads end after a few idle seconds, so
  the child would be killed for nothing. The child is spawned from the trio thread instead (a
  vfork + exec, milliseconds), which lives exactly as long as the gateway.
- Setting it in a `preexec_fn` runs Python between fork and exec in a process with threads,
  which can deadlock. Instead the child starts as a tiny launcher (this interpreter, `-c`) that
  sets the signal on itself, checks that its parent is still the gateway (it may have died
  before the signal was set), and only then `exec`s the real program: the signal survives exec.

Its exit is awaited on a pidfd, so no thread waits either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import trio

STOP_GRACE_SECONDS = 10.0
"""How long a stopped child may take to exit (valkey flushes its data) before SIGKILL."""

PR_SET_PDEATHSIG = 1

_LAUNCHER = f"""
import ctypes, os, signal, sys
parent = int(sys.argv[1])
if ctypes.CDLL(None, use_errno=True).prctl({PR_SET_PDEATHSIG}, signal.SIGTERM, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_PDEATHSIG) failed")
if os.getppid() != parent:
    sys.exit(0)
os.execv(sys.argv[2], sys.argv[2:])
"""


@dataclass
class Child:
    popen: subprocess.Popen[bytes]
    pidfd: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    async def wait(self) -> int:
        """Wait until the child exits; its exit code."""
        await trio.lowlevel.wait_readable(self.pidfd)
        return self.popen.wait()  # already exited: this only reaps it

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM, then SIGKILL if it takes longer than `grace` seconds."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGTERM)
        with trio.move_on_after(grace):
            await self.wait()
            return
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()
        await self.wait()


@dataclass(frozen=True)
class ChildOptions:
    """How a child runs beyond its argv: the gateway's own environment and output, or
    `environment` and none; the descriptors it inherits; how long it may take to stop."""

    environment: Mapping[str, str] | None = None
    inherit_output: bool = False
    """Write to the gateway's stdout and stderr (a data-plane worker's logs), not /dev/null."""
    pass_fds: Sequence[int] = ()
    stop_grace: float = STOP_GRACE_SECONDS


@contextlib.asynccontextmanager
async def open_child(
    argv: Sequence[str], options: ChildOptions = ChildOptions()
) -> AsyncIterator[Child]:
    """Run `argv` (stdio on /dev/null unless `options` say otherwise, in its own session so a
    terminal's Ctrl-C reaches only the gateway) while the block runs; leaving the block stops
    it."""
    popen = _spawn(argv, options)
    child = Child(popen, os.pidfd_open(popen.pid))
    try:
        yield child
    finally:
        with trio.CancelScope(shield=True):
            await child.stop(options.stop_grace)
        os.close(child.pidfd)


def _spawn(argv: Sequence[str], options: ChildOptions) -> subprocess.Popen[bytes]:
    """Fork from the calling (trio) thread: the parent-death signal follows this thread."""
    output = None if options.inherit_output else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), *argv],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        env=options.environment,
        pass_fds=options.pass_fds,
        start_new_session=True,
    )
