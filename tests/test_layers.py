"""Dependencies point one way (STYLE.md): core ← storage, channels ← pipeline ← ops ← api, cli."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dispatcher"
LEAVES = {"errors", "settings", "logs", "loops"}
# What each layer may import from dispatcher, besides itself and the leaves.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "storage": {"core"},
    "channels": {"core"},
    "pipeline": {"core", "storage", "channels"},
    "ops": {"core", "storage", "channels", "pipeline"},
    "api": {"core", "storage", "channels", "pipeline", "ops"},
    "embedded": set(),
    "cli": {"core", "storage", "channels", "pipeline", "ops", "api", "embedded", "demo", "cli_tools"},
    "cli_tools": {"core", "storage", "channels", "pipeline", "ops"},
    "demo": {
        "core",
        "storage",
        "channels",
        "pipeline",
        "ops",
        "api",
        "embedded",
        "demo_campaign",
        "demo_email",
    },
    "demo_campaign": set(),
    "demo_email": {"channels", "demo_campaign"},
    "errors": set(),
    "settings": set(),
    "logs": set(),
    "loops": set(),
    "__init__": set(),
    "__main__": {"cli"},
}
CORE_FORBIDDEN = {"asyncio", "aiohttp", "sqlalchemy", "arq", "redis", "socket", "subprocess", "os"}


def _layer(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_allowed_layers(path: Path) -> None:
    layer = _layer(path)
    assert layer in ALLOWED, f"new top-level module {layer!r}: add it to ALLOWED"
    for name in _imports(path):
        if name == "dispatcher":
            continue
        if name.startswith("dispatcher."):
            target = name.split(".")[1]
            assert target == layer or target in LEAVES or target in ALLOWED[layer], (
                f"{path.relative_to(PACKAGE)} imports {name}: {layer} must not depend on {target}"
            )
        elif layer == "core":
            assert name.split(".")[0] not in CORE_FORBIDDEN, (
                f"core must stay pure: {path.name} imports {name}"
            )


def test_the_walker_sees_a_violation() -> None:
    fake = ast.parse("from dispatcher.api.app import create_app")
    node = fake.body[0]
    assert isinstance(node, ast.ImportFrom)
    assert node.module is not None
    assert node.module.split(".")[1] not in ALLOWED["core"]


def test_only_the_cli_reads_the_environment() -> None:
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in SOURCES
        if ("os.environ" in p.read_text() or "getenv(" in p.read_text())
        and _layer(p) not in {"cli", "cli_tools", "demo"}
    ]
    assert offenders == []
