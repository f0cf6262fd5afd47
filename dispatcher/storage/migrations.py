"""Run the alembic chain from code: ``dispatcher migrate``, the demo and the test fixtures all use this."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import dispatcher


def alembic_dir() -> Path:
    """The migrations live beside the package: the repository root, or the image's working directory.

    A plain ``site-packages`` parent would hold the alembic *library*, so a candidate must be ours.
    """
    for root in (Path(dispatcher.__file__).resolve().parent.parent, Path.cwd()):
        candidate = root / "alembic"
        env = candidate / "env.py"
        if env.is_file() and "dispatcher" in env.read_text():
            return candidate
    raise FileNotFoundError(
        "dispatcher's alembic/ folder not found beside the package or in the working directory"
    )


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(alembic_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking (alembic runs its own event loop): call from a thread when a loop is running."""
    if database_url.startswith("sqlite"):
        Path(database_url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
