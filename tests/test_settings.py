from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.errors import InputError
from dispatcher.settings import Settings


def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = Settings.from_env({"DISPATCHER_VAR_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/dispatcher.db"
    assert settings.redis_url is None
    assert settings.is_sqlite
    assert len(settings.secret_key) >= 32
    # the generated secret survives a restart, so links already sent stay valid
    assert Settings.from_env({"DISPATCHER_VAR_DIR": str(tmp_path)}).secret_key == settings.secret_key
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600


def test_environment_overrides(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "DISPATCHER_VAR_DIR": str(tmp_path),
            "DATABASE_URL": "postgresql+asyncpg://u@h/db",
            "REDIS_URL": "redis://h:1/2",
            "DISPATCHER_SECRET_KEY": "s3cret",
            "DISPATCHER_PORT": "9000",
            "DISPATCHER_LOG_JSON": "true",
        }
    )
    assert settings.database_url == "postgresql+asyncpg://u@h/db"
    assert settings.redis_url == "redis://h:1/2"
    assert settings.secret_key == "s3cret"
    assert settings.port == 9000
    assert settings.public_base_url == "http://127.0.0.1:9000"
    assert settings.log_json
    assert not settings.is_sqlite
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    "name", ["DISPATCHER_PORT", "DISPATCHER_MAX_JSON_BYTES", "DISPATCHER_WORKER_MAX_JOBS"]
)
def test_bad_integers_name_the_variable(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match=name):
        Settings.from_env({"DISPATCHER_VAR_DIR": str(tmp_path), name: "lots"})


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = Settings.from_env({"DISPATCHER_VAR_DIR": str(tmp_path)})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
    assert settings.with_overrides(port=1).port == 1
