"""What a template sees for one recipient, shared by previews and the sender so both render alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

CONTACT_FIELDS: Final = ("first_name", "last_name", "email", "phone", "timezone")


def recipient_variables(
    campaign: Mapping[str, Any], contact: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Campaign values < contact attributes < contact fields.

    Empty contact fields are left out (not passed as None) so ``default(...)`` fallbacks apply.
    """
    merged = dict(campaign)
    if contact is not None:
        merged.update(contact.get("attributes") or {})
        merged.update({k: contact[k] for k in CONTACT_FIELDS if contact.get(k) not in (None, "")})
    return merged
