"""Schemathesis against the live app's own ``/v1/openapi.json``, every check on, with a real API key.

The ``st`` command line runs all four phases (examples, coverage, fuzzing, stateful) over a real socket
against the app on PostgreSQL. It is bounded (few examples per operation, one worker, deterministic
generation) so it runs in about a minute and gives the same cases every run. Any server error, any response
or status code or content type that the document does not describe, and any check failure fails the test.

One allowance, per operation and with its reason: ``positive_data_acceptance`` sends schema-valid bodies and
expects a 2xx. Some rules cannot be written in JSON Schema (a real phone number, a known IANA zone, template
syntax, "template_id or variants"). For the operations in ``_SEMANTIC_RULES`` a 422 naming the rule also
counts as acceptance. Everything else, including a 400 for schema-valid data, still fails.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from dispatcher.api.app import create_app
from dispatcher.ops.auth import create_key
from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine, session_factory
from tests.conftest import _truncate_pg

pytestmark = pytest.mark.timeout(400)

MAX_EXAMPLES = 4

_SEMANTIC_RULES = {
    "get_v1_reports": "'from' must be before 'to'",
    "get_v1_reports_html": "'from' must be before 'to'",
    "get_v1_lists_list_id_contacts": "segment_id must name a segment of this workspace",
    "post_v1_campaigns": "template_id or variants, not both; money has at most 6 decimals",
    "put_v1_campaigns_campaign_id": "template_id or variants, not both; money has at most 6 decimals",
    "post_v1_conversions": "a token, or both contact_id and campaign_id",
    "post_v1_lists": "default_timezone must be a known IANA zone",
    "post_v1_lists_list_id_imports": "the body must be a CSV file with a phone or email column",
    "post_v1_lists_list_id_segments": "the filter grammar (all / any / not / field)",
    "post_v1_lists_list_id_segments_preview": "the filter grammar (all / any / not / field)",
    "post_v1_providers": "sender numbers or ids, money as a decimal string",
    "put_v1_providers_provider_id": "sender numbers or ids, money as a decimal string",
    "post_v1_suppressions": "the address must be a valid phone number or e-mail address",
    "post_v1_templates": "the parts each channel needs, and valid template syntax",
    "put_v1_templates_template_id": "the parts each channel needs, and valid template syntax",
    "post_v1_templates_template_id_preview": "a known IANA zone, money with at most 14 digits",
}

# The DSN hook takes a raw message/rfc822 body, a media type schemathesis has no serializer for.
_HOOKS = """
import schemathesis


@schemathesis.serializer("message/rfc822")
def rfc822(ctx, value):
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
"""


_ACCEPTED = '["2xx", "3xx", 401, 403, 404, 409, 422, 429]'  # the default list plus 422


def _config() -> str:
    lines = ["[generation]", "deterministic = true", f"max-examples = {MAX_EXAMPLES}", ""]
    for operation_id, reason in _SEMANTIC_RULES.items():
        lines += [
            f"# {reason}",
            "[[operations]]",
            f'include-operation-id = "{operation_id}"',
            f"checks.positive_data_acceptance.expected-statuses = {_ACCEPTED}",
            "",
        ]
    return "\n".join(lines)


@pytest.fixture
def st_settings(pg_url: str, clean_redis: str, tmp_path: Path) -> Settings:
    _truncate_pg()
    return Settings(
        database_url=pg_url,
        redis_url=clean_redis,
        var_dir=tmp_path / "var",
        secret_key="test-secret",
        api_rate_limit_per_s=100_000,
        queue_name=f"dispatcher:test:{os.getpid()}",
        clean_processes=0,
    )


async def _admin_key(settings: Settings) -> str:
    engine = create_engine(settings.database_url)
    async with session_factory(engine).begin() as session:
        made = await create_key(
            session, workspace_slug="acme", name="schemathesis", scopes=("admin",), now=datetime.now(UTC)
        )
    await engine.dispose()
    return made.token


async def _run_schemathesis(base_url: str, key: str, workdir: Path) -> tuple[int, str]:
    (workdir / "st_dispatcher_hooks.py").write_text(_HOOKS)
    config = workdir / "schemathesis.toml"
    config.write_text(_config())
    env = {
        **os.environ,
        "PYTHONPATH": f"{workdir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "SCHEMATHESIS_HOOKS": "st_dispatcher_hooks",
        "NO_COLOR": "1",
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "run",
        f"{base_url}/v1/openapi.json",
        "--url",
        base_url,
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        "all",
        "--workers",
        "1",  # hypothesis' source inspection is not thread-safe; one worker also keeps CI load low
        "--request-timeout",
        "20",
        "--no-color",
        "--output-sanitize",
        "true",
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    text = out.decode("utf-8", "replace")
    (workdir / "schemathesis.log").write_text(text)
    return process.returncode, text


def _summary(output: str) -> str:
    """The run's findings: everything from the first ERRORS or FAILURES banner on."""
    starts = [at for at in (output.find("=== ERRORS ==="), output.find("=== FAILURES ===")) if at >= 0]
    return output[min(starts, default=0) :][-12_000:]


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    st_settings: Settings, tmp_path: Path
) -> None:
    key = await _admin_key(st_settings)
    server = TestServer(create_app(st_settings), host="127.0.0.1")
    await server.start_server()
    try:
        base_url = str(server.make_url("")).rstrip("/")
        code, output = await _run_schemathesis(base_url, key, tmp_path)
    finally:
        await server.close()
    tested = _tested_operations(output)
    assert tested >= 60, output[-4000:]
    assert code == 0, _summary(output)


def _tested_operations(output: str) -> int:
    for line in output.splitlines():
        if line.strip().startswith("Tested:"):
            return int(line.split(":", 1)[1].strip())
    return 0


def test_config_names_only_real_operations() -> None:
    """An allowance for a renamed or removed operation would silently hide nothing: keep the list exact."""
    from dispatcher.api.app import build_registry

    names: set[Any] = {ep.name for ep in build_registry().endpoints}
    assert set(_SEMANTIC_RULES) <= names, set(_SEMANTIC_RULES) - names
