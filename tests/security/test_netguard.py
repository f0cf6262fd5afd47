"""Provider URLs and hosts cannot point into our own network (SSRF), unless the operator allows it.

The pure check (``core/netguard``) is table-driven here. The API tests send every URL or host a tenant can
configure (Twilio-style ``base_url``, SMPP ``host``, SMTP ``host``) at internal addresses with an app whose
settings forbid private addresses, and expect a 422 naming the field.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from dispatcher.api.app import create_app
from dispatcher.core.netguard import check_public_host, check_public_url, is_public_address, parse_ip
from dispatcher.errors import InputError
from dispatcher.settings import Settings
from tests.api.makers_campaigns import provider_body
from tests.conftest import KeyMaker, bearer

INTERNAL_HOSTS = [
    "127.0.0.1", "127.9.9.9", "10.0.0.1", "10.255.255.254", "172.16.0.1", "192.168.1.1",
    "169.254.169.254", "100.100.100.200", "0.0.0.0", "0", "[::1]", "[::]", "[fe80::1]", "[fd00::1]",
    "[::ffff:127.0.0.1]", "[::ffff:a9fe:a9fe]", "[::127.0.0.1]", "[64:ff9b::a9fe:a9fe]",
    "[2002:7f00:1::1]", "2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1", "127.1", "017700000001",
    "localhost", "LOCALHOST", "localhost.", "api.localhost", "metadata.google.internal", "printer.local",
    "router.home.arpa", "redis", "224.0.0.1", "255.255.255.255", "198.18.0.1", "192.0.2.10",
]  # fmt: skip
PUBLIC_HOSTS = ["api.twilio.com", "8.8.8.8", "1.1.1.1", "[2001:4860:4860::8888]", "sms.example.com"]
MALFORMED_HOSTS = ["999.1.1.1", "08.8.8.8", "1.2.3.4.5"]


@pytest.mark.parametrize("host", INTERNAL_HOSTS)
def test_internal_hosts_are_refused_naming_the_field(host: str) -> None:
    with pytest.raises(InputError) as caught:
        check_public_url(f"https://{host}:8443/v1", allow_private=False, field="config.base_url")
    assert caught.value.status == 422
    assert caught.value.details[0]["field"] == "config.base_url"
    with pytest.raises(InputError):
        check_public_host(host.strip("[]"), allow_private=False, field="config.host")


@pytest.mark.parametrize("host", PUBLIC_HOSTS)
def test_public_hosts_pass(host: str) -> None:
    check_public_url(f"https://{host}/2010-04-01", allow_private=False)
    check_public_host(host.strip("[]"), allow_private=False)


@pytest.mark.parametrize("host", MALFORMED_HOSTS)
def test_numeric_hosts_no_resolver_reads_as_an_address_are_refused(host: str) -> None:
    with pytest.raises(InputError, match="neither a valid address"):
        check_public_url(f"http://{host}/", allow_private=False)


@pytest.mark.parametrize(
    "resolved", [["127.0.0.1"], ["93.184.216.34", "10.1.2.3"], ["::1"], ["fe80::1%eth0"], ["nonsense"]]
)
def test_a_name_resolving_to_an_internal_address_is_refused(resolved: list[str]) -> None:
    with pytest.raises(InputError, match="resolves to a private"):
        check_public_url("https://sms.example.com/", allow_private=False, resolved=resolved)
    check_public_url("https://sms.example.com/", allow_private=True, resolved=resolved)


@pytest.mark.parametrize(
    "url",
    ["ftp://api.example.com/", "file:///etc/passwd", "gopher://127.0.0.1:6379/_FLUSHALL", "http://",
     "https://api.example.com:99999/", "https://api.example.com:x/", "javascript:alert(1)",
     "https://api.example.com/a b", "https://api.example.com/\r\nHost: evil"],
)  # fmt: skip
def test_non_http_or_malformed_urls_are_refused_even_when_private_is_allowed(url: str) -> None:
    with pytest.raises(InputError):
        check_public_url(url, allow_private=True)


def test_the_operator_flag_allows_local_stand_ins() -> None:
    for host in INTERNAL_HOSTS:
        check_public_url(f"http://{host}:9/", allow_private=True)
    assert Settings(database_url="sqlite://", redis_url=None).allow_private_provider_urls is False
    env = {"DISPATCHER_SECRET_KEY": "k", "DISPATCHER_ALLOW_PRIVATE_PROVIDER_URLS": "true"}
    assert Settings.from_env(env).allow_private_provider_urls is True
    assert Settings.from_env({"DISPATCHER_SECRET_KEY": "k"}).allow_private_provider_urls is False


def test_numeric_spellings_decode_like_inet_aton() -> None:
    spellings = ["2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1", "127.1", "127.0.1", "0x7F.0.0.1"]
    for spelling in spellings:
        assert str(parse_ip(spelling)) == socket.inet_ntoa(socket.inet_aton(spelling)) == "127.0.0.1"
    assert not is_public_address("::ffff:10.0.0.1")
    assert is_public_address("::ffff:8.8.8.8")


# ------------------------------------------------------------------------------------------------- API


@pytest.fixture
async def strict_client(
    aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings
) -> TestClient:
    return await aiohttp_client(create_app(settings.with_overrides(allow_private_provider_urls=False)))


def _smpp(host: str) -> dict[str, Any]:
    config = {"host": host, "port": 2775, "system_id": "shop", "password": "pw", "from": ["+15005550006"]}
    return {"name": f"smpp {host}", "channel": "sms", "kind": "smpp", "config": config}


def _smtp(host: str) -> dict[str, Any]:
    config = {"host": host, "port": 25, "tls": "none", "from": ["news@shop.example"]}
    return {"name": f"smtp {host}", "channel": "email", "kind": "smtp", "config": config}


def _twilio(host: str) -> dict[str, Any]:
    body = provider_body(f"twilio {host}")
    body["config"]["base_url"] = f"http://{host}:9/"
    return body


API_HOSTS = ["127.0.0.1", "10.0.0.5", "169.254.169.254", "[::1]", "localhost", socket.gethostname()]


async def _refused(client: TestClient, key: str, body: dict[str, Any], field: str) -> None:
    response = await client.post("/v1/providers", json=body, headers=bearer(key))
    text = await response.text()
    assert response.status == 422, (body["config"], response.status, text)
    fields = [d.get("field") for d in (await response.json())["error"]["details"]]
    assert field in fields, text


async def test_api_refuses_internal_base_urls(strict_client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    for host in API_HOSTS:
        await _refused(strict_client, key, _twilio(host), "config.base_url")
    # and an update cannot sneak one in either
    created = await strict_client.post("/v1/providers", json=_twilio("api.twilio.com"), headers=bearer(key))
    assert created.status == 201, await created.text()
    provider_id = (await created.json())["id"]
    update = {"config": _twilio("169.254.169.254")["config"]}
    response = await strict_client.put(f"/v1/providers/{provider_id}", json=update, headers=bearer(key))
    assert response.status == 422, await response.text()


@pytest.mark.parametrize("make_body", [_smpp, _smtp], ids=["smpp", "smtp"])
async def test_api_refuses_internal_hosts(
    strict_client: TestClient, make_key: KeyMaker, make_body: Callable[[str], dict[str, Any]]
) -> None:
    key = await make_key()
    for host in API_HOSTS:
        await _refused(strict_client, key, make_body(host.strip("[]")), "config.host")


async def test_api_accepts_local_stand_ins_when_the_operator_allows(
    client: TestClient, make_key: KeyMaker
) -> None:
    key = await make_key()
    for make_body in (_twilio, _smpp, _smtp):
        response = await client.post("/v1/providers", json=make_body("127.0.0.1"), headers=bearer(key))
        assert response.status == 201, await response.text()
