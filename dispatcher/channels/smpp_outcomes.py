"""SMPP answers classified once, at the channel edge: command_status words to sent/transient/permanent.

A message of several parts is as good as its worst part. If any part was accepted and another was not,
resending would show the recipient that part twice, so the outcome carries ``possible_duplicate``.
"""

from __future__ import annotations

from typing import Final

from dispatcher.channels.base import SendOutcome, SendStatus
from dispatcher.channels.smpp_config import SmppConfig
from dispatcher.channels.smpp_wire import PartResult

__all__ = ["THROTTLED", "classify_status", "message_outcome", "status_name", "unsent_outcome"]

ESME_ROK: Final = 0x00
ESME_RINVDSTADR: Final = 0x0B
#: ESME_RMSGQFUL and ESME_RTHROTTLED: the SMSC is fine but wants us slower.
THROTTLED: Final = frozenset({0x14, 0x58})
#: The SMSC's own trouble (system error, not bound yet, temporary app error, unknown, submit failed).
_SERVER: Final = frozenset({0x04, 0x08, 0x45, 0x64, 0xFF})
_NAMES: Final = {
    0x04: "ESME_RINVBNDSTS",
    0x08: "ESME_RSYSERR",
    0x0A: "ESME_RINVSRCADR",
    0x0B: "ESME_RINVDSTADR",
    0x14: "ESME_RMSGQFUL",
    0x45: "ESME_RSUBMITFAIL",
    0x58: "ESME_RTHROTTLED",
    0x64: "ESME_RX_T_APPN",
    0x65: "ESME_RX_P_APPN",
    0xFF: "ESME_RUNKNOWNERR",
}
# Failures with no answer: whether the SMSC may have taken the part, and the reason word.
_NO_ANSWER: Final[dict[str, tuple[bool, str]]] = {
    "lost": (True, "connection"),
    "timeout": (True, "timeout"),
    "unsent": (False, "connection"),
}


def status_name(status: int) -> str:
    return _NAMES.get(status, f"command_status 0x{status:08X}")


def classify_status(status: int) -> tuple[SendStatus, str | None]:
    """(status, reason) of one submit_sm_resp / generic_nack command_status."""
    if status == ESME_ROK:
        return "sent", None
    if status in THROTTLED:
        return "transient", "throttled"
    if status in _SERVER:
        return "transient", "server_error"
    if status == ESME_RINVDSTADR:
        return "permanent", "invalid_number"
    return "permanent", "rejected"


def unsent_outcome(message_id: int, reason: str) -> SendOutcome:
    """Nothing of the message left this process."""
    return SendOutcome(message_id, "transient", error_detail="not bound to the SMSC", reason=reason)


def _part_outcome(message_id: int, part: PartResult, config: SmppConfig) -> SendOutcome:
    if part.status is None:
        if part.failure == "invalid":
            return SendOutcome(
                message_id, "permanent", error_detail="PDU could not be built", reason="rejected"
            )
        maybe_sent, reason = _NO_ANSWER.get(part.failure or "lost", (True, "connection"))
        detail = "no answer from the SMSC" if maybe_sent else "not sent"
        return SendOutcome(
            message_id, "transient", error_detail=detail, possible_duplicate=maybe_sent, reason=reason
        )
    status, word = classify_status(part.status)
    return SendOutcome(
        message_id,
        status,
        error_code=f"0x{part.status:08X}",
        error_detail=status_name(part.status),
        retry_after=config.throttle_retry_after if word == "throttled" else None,
        reason=word,
    )


def message_outcome(message_id: int, parts: list[PartResult], config: SmppConfig) -> SendOutcome:
    """One outcome for all the parts of a message."""
    if len(parts) == 1 and parts[0].status == 0:  # the common case, without building part outcomes
        return SendOutcome(message_id, "sent", provider_message_id=parts[0].message_id, segments=1)
    outcomes = [_part_outcome(message_id, part, config) for part in parts]
    failed = [outcome for outcome in outcomes if outcome.status != "sent"]
    if not failed:
        return SendOutcome(message_id, "sent", provider_message_id=parts[-1].message_id, segments=len(parts))
    worst = next((outcome for outcome in failed if outcome.status == "permanent"), failed[0])
    some_sent = len(failed) < len(outcomes) or any(outcome.possible_duplicate for outcome in failed)
    return SendOutcome(
        message_id,
        worst.status,
        error_code=worst.error_code,
        error_detail=worst.error_detail,
        retry_after=worst.retry_after,
        segments=len(parts),
        possible_duplicate=some_sent and worst.status == "transient",
        reason=worst.reason,
    )
