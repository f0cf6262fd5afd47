"""The embedded Redis-compatible server: real binary, shared through a pidfile, stopped by its owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import redis

from dispatcher.embedded import ensure_embedded_redis


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_reuse_and_stop(tmp_path: Path) -> None:
    owner = ensure_embedded_redis(tmp_path)
    try:
        assert owner.owned
        client = redis.Redis.from_url(owner.url)
        assert client.ping()
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        client.set("k", "v")
        guest = ensure_embedded_redis(tmp_path)
        assert not guest.owned
        assert guest.url == owner.url
        guest.stop()  # a guest never stops the owner's server
        assert client.get("k") == b"v"
        client.close()
    finally:
        owner.stop()
    assert not _alive(owner.pid)
    assert not (tmp_path / "redis.pid").exists()


def test_stale_pidfile_from_a_killed_server_is_replaced(tmp_path: Path) -> None:
    first = ensure_embedded_redis(tmp_path)
    os.kill(first.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _alive(first.pid) and time.monotonic() < deadline:
        try:
            os.waitpid(first.pid, os.WNOHANG)
        except ChildProcessError:
            break
        time.sleep(0.05)
    second = ensure_embedded_redis(tmp_path)
    try:
        assert second.owned
        assert second.pid != first.pid
        assert redis.Redis.from_url(second.url).ping()
    finally:
        second.stop()


def test_server_outlives_a_sigkilled_owner_and_is_reused(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from dispatcher.embedded import ensure_embedded_redis
        r = ensure_embedded_redis(Path({str(tmp_path)!r}))
        print(r.pid, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    reused = ensure_embedded_redis(tmp_path)
    assert reused.pid == pid
    assert not reused.owned
    assert redis.Redis.from_url(reused.url).ping()
    os.kill(pid, signal.SIGTERM)  # clean up the orphan the way an operator would
