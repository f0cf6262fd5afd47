"""Fixtures shared by the pipeline tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dispatcher.channels.fake_sms import FakeSmsConfig, start_fake_sms


@pytest.fixture
async def sms_stub() -> AsyncIterator[str]:
    """The SMS stand-in on a free port, with default behaviour; its base URL."""
    runner, url = await start_fake_sms(FakeSmsConfig(seed=1))
    yield url
    await runner.cleanup()
