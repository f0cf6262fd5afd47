"""One frozen ``Settings`` object, built once from the environment by the CLI and passed down.

Nothing else in the package reads the process environment: tests build ``Settings`` directly.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from dispatcher.errors import InputError

DEFAULT_VAR_DIR = Path("var")


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    redis_url: str | None  # None: start the embedded Redis-compatible server
    var_dir: Path = DEFAULT_VAR_DIR
    secret_key: str = field(default="", repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    public_base_url: str = "http://127.0.0.1:8080"
    max_json_bytes: int = 1 << 20
    max_upload_bytes: int = 2 << 30
    api_rate_limit_per_s: int = 200
    log_level: str = "INFO"
    log_json: bool = False
    worker_max_jobs: int = 10
    worker_job_timeout_s: int = 300
    worker_shutdown_wait_s: int = 20
    queue_name: str = "dispatcher:queue"
    send_lease_s: int = 120  # a row stays "sending" this long before the sweeper may hand it back
    queue_lease_s: int = 300  # a claimed row waits this long for its send job before being handed back
    clean_processes: int | None = None  # cleaning processes per worker: None = one per core, 0 = inline
    environment: str = "development"
    # Tenants may point provider URLs and hosts at private/loopback addresses: only for local stand-ins.
    allow_private_provider_urls: bool = False

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        var_dir = Path(env.get("DISPATCHER_VAR_DIR", str(DEFAULT_VAR_DIR)))
        host = env.get("DISPATCHER_HOST", "127.0.0.1")
        port = _int(env, "DISPATCHER_PORT", 8080)
        return cls(
            database_url=env.get("DATABASE_URL") or default_sqlite_url(var_dir),
            redis_url=env.get("REDIS_URL") or None,
            var_dir=var_dir,
            secret_key=env.get("DISPATCHER_SECRET_KEY") or load_or_create_secret(var_dir),
            host=host,
            port=port,
            public_base_url=env.get("DISPATCHER_PUBLIC_URL", f"http://{host}:{port}"),
            max_json_bytes=_int(env, "DISPATCHER_MAX_JSON_BYTES", 1 << 20),
            max_upload_bytes=_int(env, "DISPATCHER_MAX_UPLOAD_BYTES", 2 << 30),
            api_rate_limit_per_s=_int(env, "DISPATCHER_API_RATE_LIMIT", 200),
            log_level=env.get("DISPATCHER_LOG_LEVEL", "INFO").upper(),
            log_json=env.get("DISPATCHER_LOG_JSON", "0") in {"1", "true", "yes"},
            worker_max_jobs=_int(env, "DISPATCHER_WORKER_MAX_JOBS", 10),
            worker_job_timeout_s=_int(env, "DISPATCHER_JOB_TIMEOUT", 300),
            worker_shutdown_wait_s=_int(env, "DISPATCHER_SHUTDOWN_WAIT", 20),
            queue_name=env.get("DISPATCHER_QUEUE", "dispatcher:queue"),
            send_lease_s=_int(env, "DISPATCHER_SEND_LEASE", 120),
            queue_lease_s=_int(env, "DISPATCHER_QUEUE_LEASE", 300),
            clean_processes=_int(env, "DISPATCHER_CLEAN_PROCESSES", -1)
            if env.get("DISPATCHER_CLEAN_PROCESSES")
            else None,
            environment=env.get("DISPATCHER_ENV", "development"),
            allow_private_provider_urls=env.get("DISPATCHER_ALLOW_PRIVATE_PROVIDER_URLS", "0")
            in {"1", "true", "yes"},
        )


def default_sqlite_url(var_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{(var_dir / 'dispatcher.db').resolve()}"


def load_or_create_secret(var_dir: Path) -> str:
    """A per-installation signing secret for the embedded set-up; production sets DISPATCHER_SECRET_KEY.

    Kept on disk so tokens in links already sent stay valid across restarts of a laptop install.
    """
    path = var_dir / "secret.key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    path.write_text(value)
    path.chmod(0o600)
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"{name} must be an integer, got {raw!r}") from None
