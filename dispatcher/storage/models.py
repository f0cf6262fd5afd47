"""Every table, importable from one place (alembic's ``target_metadata`` and the query modules)."""

from dispatcher.storage.accounts import ApiKey, IdempotentRequest, WorkerHeartbeat, Workspace
from dispatcher.storage.base import Base
from dispatcher.storage.campaigns import Batch, Campaign, Event, Message
from dispatcher.storage.contacts import (
    ConsentRecord,
    Contact,
    ContactImport,
    ContactList,
    ImportReject,
    Segment,
    Suppression,
)
from dispatcher.storage.content import Provider, Template, TemplateVersion, TrackedLink
from dispatcher.storage.early_receipts import EarlyReceipt
from dispatcher.storage.staging import ImportChunk, StagedContact

__all__ = [
    "ApiKey",
    "Base",
    "Batch",
    "Campaign",
    "ConsentRecord",
    "Contact",
    "ContactImport",
    "ContactList",
    "EarlyReceipt",
    "Event",
    "IdempotentRequest",
    "ImportChunk",
    "ImportReject",
    "Message",
    "Provider",
    "Segment",
    "StagedContact",
    "Suppression",
    "Template",
    "TemplateVersion",
    "TrackedLink",
    "WorkerHeartbeat",
    "Workspace",
]
