"""The gateway's image, built for real from the Containerfile while the rest of the suite runs.

No image registry is reachable, so the base is a Debian made with debootstrap (`PACKAGES`) and
`docker import`ed, and the Containerfile is built FROM it (`--build-arg BASE_IMAGE`). Cold, that
takes a minute or two, so it does not wait for its test: when a collected test uses the
`container_image` fixture, a thread starts at the end of collection with a dockerd of its own
(tests/docker_engine.py), makes the base and builds the image, while the other tests run; the
tests that use the image are moved to the end of the run and join the thread. Under pytest-xdist
the worker given those tests makes the image in their fixture instead, and they come first
(`pytest_collection_modifyitems`).

The debootstrap tarball is cached in ~/.cache/oauthproxy-tests (XDG_CACHE_HOME), keyed by the
suite, the packages, the mirror and the host's own CA certificates, so a rerun on one machine
skips it (CI starts clean). The host's CAs (/usr/local/share/ca-certificates) go into the base so
that its downloads pass a TLS-inspecting proxy where the host's do.

Where no dockerd can start (not root, no docker.io) the tests skip, except in CI (CI=true),
where that fails them.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from tests.docker_engine import Engine, start_engine, stop_engine

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_IMAGE = f"oauthproxy-test/debian:{SUITE}"
IMAGE = "oauthproxy-test/gateway:1"
ROOT = Path(__file__).resolve().parents[1]
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
FIXTURE = "container_image"
TMPFS_SIZE = "4g"
TMPFS_WHEN_AVAILABLE = 8 * 2**30
"""dockerd's data (about 1 GB) is kept in memory only where this much is available."""
T = TypeVar("T")


class PreparationError(Exception):
    """A step of making the image failed; the message has the step's output."""


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses for the main archive (deb822 or one-line)."""
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]:
        with contextlib.suppress(OSError):
            for uri in _archive_uris(Path(path).read_text()):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _archive_uris(text: str) -> list[str]:
    """URIs of the main Debian archive (not security, not third-party) in an apt sources file."""
    uris: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] == ["deb"]:
            uris += [word for word in words[1:] if "://" in word][:1]
        elif words[:1] == ["URIs:"]:
            uris += words[1:]
    return [uri for uri in uris if uri.rstrip("/").endswith("/debian")]


def cache_dir(environment: dict[str, str]) -> Path:
    home = environment.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(home) / "oauthproxy-tests"


def _local_cas() -> list[Path]:
    return sorted(LOCAL_CAS.rglob("*.crt")) if LOCAL_CAS.is_dir() else []


@dataclass
class ImageBuild:
    """The thread that makes the image, and what it found."""

    engine: Engine | None = None
    no_engine: str | None = None
    """Why no dockerd could start (the one reason to skip, outside CI)."""
    error: str | None = None
    durations: dict[str, float] = field(default_factory=dict)
    waited: float = 0.0
    """How long the tests waited for the thread when they joined it."""
    _thread: threading.Thread | None = None
    _current: subprocess.Popen[bytes] | None = None
    _memory: Path | None = None
    """dockerd's data root when it is a tmpfs."""
    _cancelled: bool = False
    _environment: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        if self._thread is not None:
            return
        # A copy: the tests' monkeypatch changes os.environ while the thread runs.
        self._environment = dict(os.environ)
        self._thread = threading.Thread(target=self._prepare, name="image build", daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            began = time.monotonic()
            self._thread.join()
            self.waited += time.monotonic() - began

    def close(self) -> None:
        """Stop what is still running, then dockerd with its containers and images."""
        self._cancelled = True
        if (current := self._current) is not None and current.poll() is None:
            _kill_group(current.pid)  # debootstrap's dpkg too, before its directory goes
        self.join()
        began = time.monotonic()
        if self.engine is not None:
            self.engine.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.engine.process.wait(timeout=60)
        memory = self._memory
        if memory is not None and (self.engine is None or self.engine.process.poll() is not None):
            # dockerd has exited: its gigabyte of image files goes at once with the tmpfs.
            subprocess.run(["umount", str(memory)], check=False)
        if self.engine is not None:
            stop_engine(self.engine)  # kills a dockerd that did not exit, removes its directory
            self.engine = None
            self.durations["dockerd stop"] = time.monotonic() - began
        if memory is not None and os.path.ismount(memory):
            subprocess.run(["umount", "--lazy", str(memory)], check=False)
        if memory is not None:
            shutil.rmtree(memory.parent, ignore_errors=True)
        self._memory = None

    def _data_root_in_memory(self, root: Path) -> None:
        """dockerd's data on a tmpfs where memory allows (freed at once at the end, where
        deleting its files from disk takes half a minute after all the other tests)."""
        data = root / "data"
        data.mkdir()
        if _available_memory() < TMPFS_WHEN_AVAILABLE:
            return
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(data)],
            capture_output=True,
        )
        if done.returncode == 0:
            self._memory = data

    def _prepare(self) -> None:
        if os.geteuid() != 0:
            self.no_engine = "dockerd needs root, and the tests do not run as root"
            return
        try:
            began = time.monotonic()
            root = Path(tempfile.mkdtemp(prefix="dkimg", dir="/tmp"))  # short: socket path
            self._data_root_in_memory(root)
            self.engine = start_engine(root)
            self.durations["dockerd"] = time.monotonic() - began
        except (pytest.fail.Exception, OSError, subprocess.SubprocessError) as error:
            self.no_engine = f"no dockerd could start: {error}"
            return
        try:
            cache = cache_dir(self._environment)
            tarball = self._timed("base", lambda: self._base_tarball(cache))
            self._timed("import", lambda: self._docker("import", str(tarball), BASE_IMAGE))
            self._timed("build", self._build)
        except PreparationError as error:
            self.error = str(error)
        except Exception as error:  # the test reports it, with its type
            self.error = repr(error)

    def _timed(self, step: str, work: Callable[[], T]) -> T:
        began = time.monotonic()
        result = work()
        self.durations[step] = time.monotonic() - began
        return result

    def _build(self) -> None:
        # The classic builder with the host's network: this dockerd has no bridge, and BuildKit
        # (the buildx plugin) is not part of Debian's docker.io.
        self._docker(
            "build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
            "--file", str(ROOT / "Containerfile"), "--tag", IMAGE, str(ROOT),
            environment={"DOCKER_BUILDKIT": "0"},
        )  # fmt: skip

    def _docker(self, *args: str, environment: dict[str, str] | None = None) -> None:
        assert self.engine is not None
        self._run(["docker", "--host", self.engine.host, *args], environment)

    def _run(self, command: list[str], environment: dict[str, str] | None = None) -> None:
        if self._cancelled:
            raise PreparationError("cancelled: the session ended")
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**self._environment, **(environment or {})},
                start_new_session=True,
            )
            self._current = process
            try:
                returncode = process.wait(timeout=1200)
            except subprocess.TimeoutExpired:
                process.kill()
                returncode = process.wait()
            finally:
                self._current = None
            if returncode != 0:
                output.seek(0)
                tail = output.read().decode(errors="replace")[-3000:]
                raise PreparationError(f"{' '.join(command[:4])} … exited {returncode}:\n{tail}")

    def _base_tarball(self, cache: Path) -> Path:
        """The debootstrapped root filesystem as a tarball, from the cache when it is there."""
        mirror = debian_mirror()
        cas = _local_cas()
        recipe = {
            "suite": SUITE,
            "packages": PACKAGES,
            "mirror": mirror,
            "cas": [hashlib.sha256(ca.read_bytes()).hexdigest() for ca in cas],
        }
        key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
        tarball = cache / f"debian-{SUITE}-{key}.tar"
        if tarball.exists():
            return tarball  # the step "base" takes no time: the cache had it
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
        try:
            rootfs = work / "rootfs"
            self._run(
                [
                    _sbin("debootstrap"), "--variant=minbase", f"--include={','.join(PACKAGES)}",
                    SUITE, str(rootfs), mirror,
                ]
            )  # fmt: skip
            if cas:
                for ca in cas:
                    shutil.copy(ca, rootfs / "usr/local/share/ca-certificates" / ca.name)
                self._run(["chroot", str(rootfs), "update-ca-certificates"])
            partial = work / "rootfs.tar"
            self._run(
                [
                    "tar", "--create", "--file", str(partial), "--numeric-owner",
                    "--directory", str(rootfs), "--exclude=./var/cache/apt/*.bin",
                    "--exclude=./var/lib/apt/lists/*", "--exclude=./usr/share/doc/*",
                    "--exclude=./usr/share/man/*", ".",
                ]
            )  # fmt: skip
            for stale in cache.glob(f"debian-{SUITE}-*.tar"):
                stale.unlink()
            partial.rename(tarball)
        finally:
            _unmount_under(work)  # what a debootstrap killed half-way left mounted
            shutil.rmtree(work, ignore_errors=True)
        return tarball


def _kill_group(leader: int) -> None:
    """SIGKILL a process group and wait (up to 10 s) until none of it is left."""
    deadline = time.monotonic() + 10
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGKILL)
        while time.monotonic() < deadline:
            os.killpg(leader, 0)  # ProcessLookupError once the last one is gone
            time.sleep(0.05)


def _available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _unmount_under(directory: Path) -> None:
    with contextlib.suppress(OSError):
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted(mounts, reverse=True):
            if mount.startswith(f"{directory}/"):
                subprocess.run(["umount", "--lazy", mount], check=False, capture_output=True)


def _sbin(name: str) -> str:
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in ("/usr/sbin", "/sbin") if Path(f"{d}/{name}").exists()), None
    )
    if found is None:
        raise PreparationError(f"{name} is not installed (apt-get install {name})")
    return found


_build = ImageBuild()


def _xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In one process, the tests that use the image run last, so its build overlaps everything
    else. Under pytest-xdist every worker collects every test, so no worker starts the build at
    collection (that would be one build per worker): the worker that is given these tests builds
    the image in the `container_image` fixture. They come first then, so that worker starts the
    build at the beginning while the other workers run the rest of the suite."""
    uses = [item for item in items if FIXTURE in getattr(item, "fixturenames", ())]
    if uses:
        chosen = set(map(id, uses))
        others = [item for item in items if id(item) not in chosen]
        items[:] = uses + others if _xdist_worker(config) else others + uses


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or _xdist_worker(session.config):
        return
    if any(FIXTURE in getattr(item, "fixturenames", ()) for item in session.items):
        _build.start()


def pytest_sessionfinish() -> None:
    _build.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _build.durations:
        steps = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in _build.durations.items())
        terminalreporter.write_line(
            f"container image (in the background): {steps}; the tests waited {_build.waited:.0f} s"
        )


@pytest.fixture(scope="session")
def container_image() -> Engine:
    """The dockerd that holds `IMAGE`, the gateway built from the Containerfile."""
    _build.start()  # already started at collection in one process; under xdist, here
    _build.join()
    if _build.no_engine is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{_build.no_engine} (CI=true: the container test must run)")
        pytest.skip(_build.no_engine)
    if _build.error is not None:
        pytest.fail(f"the image could not be made: {_build.error}")
    assert _build.engine is not None
    return _build.engine
