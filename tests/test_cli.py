from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_then_create_key_prints_it_once_and_stores_only_the_hash(tmp_path: Path) -> None:
    env = {**os.environ, "DISPATCHER_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    migrated = _run(["migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    created = _run(
        ["apikey", "create", "--workspace", "brand", "--name", "ci", "--scope", "read", "--json"], env
    )
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    assert out["key"].startswith("dsp_")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dispatcher.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT key_hash, scopes FROM api_keys")).all()
    engine.dispose()
    assert len(rows) == 1
    assert out["key"] not in repr(rows)
    assert json.loads(rows[0][1]) == ["read"]


def test_bad_configuration_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "DISPATCHER_VAR_DIR": str(tmp_path), "DISPATCHER_PORT": "eighty"}
    result = _run(["migrate"], env)
    assert result.returncode == 2
    assert "DISPATCHER_PORT must be an integer" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_commands() -> None:
    result = _run(["--help"], dict(os.environ))
    assert result.returncode == 0
    for command in ("migrate", "serve", "worker", "apikey", "demo"):
        assert command in result.stdout
