"""Pushing the accounts a CS-side change touched, right after its commit (best effort).

A CSM deactivated (``PATCH /api/v1/csms/{id}``, ``crmsync csms import``) reassigns their
accounts (domain.md 8.3 step 7, :func:`app.db.csm_store.reassign_csm_accounts`): the new
``csm_email`` is stamped on each account, so any later push sends it; this sends it now, through
the same :class:`~app.wiring.webhook_processing.WritebackQueue` (hence the same
:func:`app.wiring.push.run_push` with ``only_row_ids``) as a closed-won's CSM. A CRM that is not
configured is skipped; a failed push is logged and left to the next push.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from app.core.types import CrmName
from app.db.enums import InboxStatus
from app.mappers.config import load_mapping_set
from app.settings import Settings
from app.wiring.webhook_processing import HandlerResult, ProcessingContext, WritebackQueue

__all__ = ["push_accounts"]


def push_accounts(
    settings: Settings, session_factory: sessionmaker[Session], account_ids: Sequence[int]
) -> list[CrmName]:
    """Push ``account_ids``' outbound fields to every configured CRM (when
    ``webhooks.push_writebacks`` is on, as for closed-won write-backs). Returns the CRMs tried."""
    ids = sorted(set(account_ids))
    if not ids or not settings.webhooks.push_writebacks:
        return []
    queue = WritebackQueue(ProcessingContext(settings, session_factory))
    tried: list[CrmName] = []
    for crm in settings.enabled_crms:
        mappings = load_mapping_set(
            crm, settings.mapping_file, default_currency=settings.default_currency
        )
        accounts = mappings.for_table("accounts").crm_object
        queue.add(HandlerResult(InboxStatus.DONE, writebacks={crm: {accounts: ids}}))
        tried.append(crm)
    queue.flush()
    return tried
