"""The default mappings shipped for Salesforce and HubSpot (fields: docs/sandbox-schema.md).

Pulled fields are ``crm_to_cs``: the CRM owns the commercial facts. The computed fields of
domain.md 4.9 and 5 are ``cs_to_crm`` write-backs (``Health_Score__c`` / ``crmsync_health_score``
...). Handover notes are synced both ways (domain.md 6.3) with ``newest_wins``: the title and the
body. The structured fields are parsed from the body (inbound only) and reach the CRM through it:
the body's ``handover_body`` converter is an outbound composite that renders them when they
changed on the CS side (:func:`app.mappers.handover.compose_body`). A pull takes them exactly
when it takes the body. docs/mapping.md has the same tables in prose.

``default_currency`` fills ``currency`` when the CRM has none (Salesforce ``CurrencyIsoCode``
exists only in multi-currency orgs and is therefore an ``optional`` field; HubSpot companies carry
no currency). The engine passes its configured default (``EUR`` if it has none).
"""

from __future__ import annotations

from types import MappingProxyType

from app.mappers.handover import STRUCTURED_COLUMNS
from app.mappers.spec import (
    ConflictPolicy,
    Direction,
    FieldMapping,
    MappingSet,
    ObjectMapping,
    ParentRef,
)

DEFAULT_CURRENCY = "EUR"

IN = Direction.CRM_TO_CS
OUT = Direction.CS_TO_CRM
BOTH = Direction.BOTH
NEWEST = ConflictPolicy.NEWEST_WINS

HANDOVER_STRUCTURED = STRUCTURED_COLUMNS  # parsed from the note body, rendered into it


def _handover_fields(body_field: str) -> tuple[FieldMapping, ...]:
    """The note body both ways (an outbound composite of the structured columns), and the
    structured columns parsed from it (inbound only: they reach the CRM through the body)."""
    return (
        FieldMapping(body_field, "body", "handover_body", BOTH, NEWEST),
        *(
            FieldMapping(body_field, column, f"handover_{column}", IN)
            for column in HANDOVER_STRUCTURED
        ),
    )


def salesforce_mappings(default_currency: str = DEFAULT_CURRENCY) -> MappingSet:
    """The default Salesforce mappings: Account, Opportunity, Note."""
    currency = MappingProxyType({"currency": default_currency})
    account = ObjectMapping(
        crm="salesforce",
        crm_object="Account",
        cs_table="accounts",
        id_field="Id",
        modified_field="SystemModstamp",
        deleted_field="IsDeleted",
        fields=(
            FieldMapping("Name", "name", "string"),
            FieldMapping("Website", "domain", "domain"),
            FieldMapping("Industry", "industry", "string"),
            FieldMapping("OwnerId", "sales_owner", "string"),
            FieldMapping("CurrencyIsoCode", "currency", "currency", optional=True),
            FieldMapping("ARR__c", "arr", "decimal"),
            FieldMapping("Licensed_Seats__c", "licensed_seats", "integer"),
            FieldMapping("Plan__c", "plan", "string"),
            FieldMapping("Strategic_Account__c", "strategic_account", "boolean"),
            FieldMapping("Contract_Start__c", "contract_start_on", "date"),
            FieldMapping("Contract_End__c", "contract_end_on", "date"),
            # write-backs (domain.md 4.9, 5)
            FieldMapping("Health_Score__c", "health_score", "integer", OUT),
            FieldMapping("Health_Band__c", "health_band", "string", OUT),
            FieldMapping("Health_Trend__c", "health_trend", "string", OUT),
            FieldMapping("Health_Reasons__c", "health_reasons", "text:255", OUT),
            FieldMapping("Tier__c", "tier", "string", OUT),
            FieldMapping("Renewal_Date__c", "renewal_on", "date", OUT),
            FieldMapping("Days_To_Renewal__c", "renewal_on", "days_until", OUT),
            FieldMapping("Renewal_Risk__c", "renewal_risk", "string", OUT),
            # closed-won write-backs (#20)
            FieldMapping("CSM_Email__c", "csm_email", "string", OUT),
            FieldMapping("Onboarding_Status__c", "onboarding_status", "string", OUT),
        ),
        defaults=currency,
    )
    opportunity = ObjectMapping(
        crm="salesforce",
        crm_object="Opportunity",
        cs_table="opportunities",
        id_field="Id",
        modified_field="SystemModstamp",
        deleted_field="IsDeleted",
        fields=(
            FieldMapping("Name", "name", "string"),
            FieldMapping("AccountId", "sf_account_id", "string"),
            FieldMapping("StageName", "stage", "sf_stage"),
            FieldMapping("Amount", "amount", "decimal"),
            FieldMapping("CurrencyIsoCode", "currency", "currency", optional=True),
            FieldMapping("CloseDate", "close_on", "date"),
            FieldMapping("IsClosed", "is_closed", "boolean"),
            FieldMapping("IsWon", "is_won", "boolean"),
            FieldMapping("Type", "type", "opportunity_type"),
            FieldMapping("OwnerId", "sales_owner", "string"),
            FieldMapping("Term_Months__c", "contract_term_months", "integer"),
            FieldMapping("Preassigned_CSM__c", "preassigned_csm_email", "email"),
        ),
        parents=(ParentRef("account_id", "accounts", "AccountId"),),
        defaults=currency,
    )
    note = ObjectMapping(
        crm="salesforce",
        crm_object="Note",
        cs_table="handover_notes",
        id_field="Id",
        modified_field="SystemModstamp",
        deleted_field="IsDeleted",
        fields=(
            FieldMapping("ParentId", "sf_parent_id", "string"),
            FieldMapping("Title", "title", "string", BOTH, NEWEST),
            FieldMapping("OwnerId", "author", "string"),
            *_handover_fields("Body"),
        ),
        parents=(
            ParentRef("account_id", "accounts", "ParentId", id_prefix="001"),
            ParentRef("opportunity_id", "opportunities", "ParentId", id_prefix="006"),
            ParentRef("opportunity_id", "opportunities", "Body", "handover_opportunity_id"),
        ),
        record_filter="handover:Body",
    )
    return MappingSet("salesforce", (account, opportunity, note))


def hubspot_mappings(default_currency: str = DEFAULT_CURRENCY) -> MappingSet:
    """The default HubSpot mappings: companies, deals, notes (with associations)."""
    currency = MappingProxyType({"currency": default_currency})
    company = ObjectMapping(
        crm="hubspot",
        crm_object="companies",
        cs_table="accounts",
        id_field="id",
        modified_field="hs_lastmodifieddate",
        deleted_field="archived",
        fields=(
            FieldMapping("name", "name", "string"),
            FieldMapping("domain", "domain", "domain"),
            FieldMapping("industry", "industry", "string"),
            FieldMapping("hubspot_owner_id", "sales_owner", "string"),
            FieldMapping("arr", "arr", "decimal"),
            FieldMapping("licensed_seats", "licensed_seats", "integer"),
            FieldMapping("plan", "plan", "string"),
            FieldMapping("strategic_account", "strategic_account", "boolean"),
            FieldMapping("contract_start_date", "contract_start_on", "date"),
            FieldMapping("contract_end_date", "contract_end_on", "date"),
            # write-backs (domain.md 4.9, 5)
            FieldMapping("crmsync_health_score", "health_score", "integer", OUT),
            FieldMapping("crmsync_health_band", "health_band", "string", OUT),
            FieldMapping("crmsync_health_trend", "health_trend", "string", OUT),
            FieldMapping("crmsync_health_reasons", "health_reasons", "text:255", OUT),
            FieldMapping("crmsync_tier", "tier", "string", OUT),
            FieldMapping("crmsync_renewal_date", "renewal_on", "date", OUT),
            FieldMapping("crmsync_days_to_renewal", "renewal_on", "days_until", OUT),
            FieldMapping("crmsync_renewal_risk", "renewal_risk", "string", OUT),
            # closed-won write-backs (#20)
            FieldMapping("crmsync_csm_email", "csm_email", "string", OUT),
            FieldMapping("crmsync_onboarding_status", "onboarding_status", "string", OUT),
        ),
        defaults=currency,
    )
    deal = ObjectMapping(
        crm="hubspot",
        crm_object="deals",
        cs_table="opportunities",
        id_field="id",
        modified_field="hs_lastmodifieddate",
        deleted_field="archived",
        fields=(
            FieldMapping("dealname", "name", "string"),
            FieldMapping("associations.companies", "hs_company_id", "first_id"),
            FieldMapping("dealstage", "stage", "hs_stage"),
            FieldMapping("amount", "amount", "decimal"),
            FieldMapping("deal_currency_code", "currency", "currency", optional=True),
            FieldMapping("closedate", "close_on", "date"),
            FieldMapping("hs_is_closed", "is_closed", "boolean"),
            FieldMapping("hs_is_closed_won", "is_won", "boolean"),
            FieldMapping("dealtype", "type", "opportunity_type"),
            FieldMapping("hubspot_owner_id", "sales_owner", "string"),
            FieldMapping("contract_term_months", "contract_term_months", "integer"),
            FieldMapping("preassigned_csm_email", "preassigned_csm_email", "email"),
        ),
        parents=(ParentRef("account_id", "accounts", "associations.companies", "first_id"),),
        defaults=currency,
    )
    note = ObjectMapping(
        crm="hubspot",
        crm_object="notes",
        cs_table="handover_notes",
        id_field="id",
        modified_field="hs_lastmodifieddate",
        deleted_field="archived",
        fields=(
            FieldMapping("associations.companies", "hs_company_id", "first_id"),
            FieldMapping("associations.deals", "hs_deal_id", "first_id"),
            FieldMapping("hubspot_owner_id", "author", "string"),
            *_handover_fields("hs_note_body"),
        ),
        parents=(
            ParentRef("account_id", "accounts", "associations.companies", "first_id"),
            ParentRef("opportunity_id", "opportunities", "associations.deals", "first_id"),
            ParentRef("opportunity_id", "opportunities", "hs_note_body", "handover_opportunity_id"),
        ),
        record_filter="handover:hs_note_body",
    )
    return MappingSet("hubspot", (company, deal, note))


def default_mappings(crm: str, default_currency: str = DEFAULT_CURRENCY) -> MappingSet:
    """The default :class:`MappingSet` of ``crm`` (``"salesforce"`` or ``"hubspot"``)."""
    if crm == "salesforce":
        return salesforce_mappings(default_currency)
    if crm == "hubspot":
        return hubspot_mappings(default_currency)
    raise KeyError(f"unknown CRM {crm!r}; expected 'salesforce' or 'hubspot'")
