"""Starting onboarding for a won opportunity, exactly once (domain.md 6-8)."""

from __future__ import annotations

from app.core.types import CrmName
from app.mappers.spec import MappingSet
from app.wiring.webhook_processing import EventView, HandlerResult, ProcessingContext


def start_onboarding(
    context: ProcessingContext,
    event: EventView,
    crm: CrmName,
    mappings: MappingSet,
    opportunity_crm_id: str,
) -> HandlerResult:
    """Not built yet: the event stays due and is retried (with backoff) until it is."""
    raise RuntimeError("onboarding plans are not built yet; the event is retried")
