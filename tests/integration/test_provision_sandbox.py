"""Field provisioning through the sandbox, over HTTPS, with the real client libraries.

Each test starts its own small sandbox without crmsync's write-back fields
(``SandboxConfig.without_writeback_fields``): missing -> setup creates -> ``crmsync crm check``'s
comparison says ready and :func:`missing_targets` is empty -> a second setup makes only the
reads. A Salesforce user without "Customize Application" gets the exact list and nothing is
created.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from app.crm.check import Status, findings, needs_from, worst
from app.crm.hubspot.client import HubSpotClient
from app.crm.hubspot.fields import HubSpotFields
from app.crm.hubspot.org import read_org as read_hubspot
from app.crm.provision import HEALTH_BANDS, RENEWAL_RISKS, Problem, missing_targets, setup
from app.crm.salesforce.client import SalesforceClient
from app.crm.salesforce.fields import SalesforceFields
from app.crm.salesforce.org import read_org as read_salesforce
from app.mappers.defaults import hubspot_mappings, salesforce_mappings
from app.settings import Settings
from crmsync_sandbox import Sandbox, SandboxConfig

SF_WRITEBACKS = {
    "Health_Score__c",
    "Health_Band__c",
    "Health_Trend__c",
    "Health_Reasons__c",
    "Tier__c",
    "Renewal_Date__c",
    "Days_To_Renewal__c",
    "Renewal_Risk__c",
    "CSM_Email__c",
    "Onboarding_Status__c",
}


def _sandbox(**kw: Any) -> Sandbox:
    return Sandbox(SandboxConfig(accounts=3, without_writeback_fields=True, **kw))


def sf_client(sb: Sandbox) -> SalesforceClient:
    sf = sb.info.salesforce
    settings = Settings(
        salesforce_instance_url=sf.instance_url,
        salesforce_api_version=sf.api_version,
        salesforce_client_id=sf.client_id,
        salesforce_client_secret=sf.client_secret,
        ca_bundle=sb.info.ca_file,
    )
    return SalesforceClient(settings, sleep=lambda _s: None)


def hs_client(sb: Sandbox) -> HubSpotClient:
    settings = Settings(
        hubspot_base_url=sb.info.hubspot.base_url,
        hubspot_access_token=sb.info.hubspot.access_token,
        ca_bundle=sb.info.ca_file,
    )
    return HubSpotClient(settings, sleep=lambda _s: None, index_lag_margin=timedelta(0))


def calls(sb: Sandbox, crm: str, needle: str) -> int:
    routes = sb.control("GET", "/stats")["calls"].get(crm, {})
    return sum(sum(v.values()) for route, v in routes.items() if needle in route)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with _sandbox() as sb:
        yield sb


def test_salesforce_missing_fields_are_created_then_setup_is_a_no_op(sandbox: Sandbox) -> None:
    mappings = salesforce_mappings()
    with sf_client(sandbox) as client:
        fields = SalesforceFields(client)
        missing = missing_targets(fields, mappings)
        assert {m.full_name for m in (x.spec for x in missing)} == {
            *(f"Account.{n}" for n in SF_WRITEBACKS),
            "Account.Crmsync_Id__c",
            "Opportunity.Crmsync_Id__c",
        }
        assert all(m.problem is Problem.MISSING and m.creatable for m in missing)
        before = read_salesforce(client, mappings.object_names)
        assert worst(findings(before, needs_from(mappings))) is Status.MISSING

        sandbox.control("POST", "/reset")
        report = setup(fields, mappings, dry_run=False)
        assert report.status == "done"
        assert not report.manual
        assert len(report.created) == len(missing)
        # one describe per object, one create per field, one describe per object touched
        assert calls(sandbox, "salesforce", "tooling") == len(missing)
        assert calls(sandbox, "salesforce", "describe") == 3 + 2

        assert missing_targets(fields, mappings) == []
        after = read_salesforce(client, mappings.object_names)
        assert worst(findings(after, needs_from(mappings))) is Status.OK
        described = client._call(
            "describe", lambda sf: sf.restful("sobjects/Account/describe"), "Account"
        )
        by_name = {f["name"]: f for f in described["fields"]}
        assert by_name["Crmsync_Id__c"]["externalId"] is True
        assert by_name["Health_Reasons__c"]["length"] == 255
        band = [v["value"] for v in by_name["Health_Band__c"]["picklistValues"]]
        assert tuple(band) == HEALTH_BANDS
        risk = [v["value"] for v in by_name["Renewal_Risk__c"]["picklistValues"]]
        assert tuple(risk) == RENEWAL_RISKS

        # the new fields take values: an upsert on the new external id writes them
        client._call(
            "upsert",
            lambda sf: sf.Account.upsert(
                "Crmsync_Id__c/6f1c7a52-0000-4000-8000-000000000001",
                {"Name": "Provisioned", "Health_Score__c": 73, "Health_Band__c": "green"},
            ),
            "Account",
        )

        sandbox.control("POST", "/reset")
        again = setup(fields, mappings, dry_run=False)
        assert again.status == "ready"
        assert not again.planned
        assert not again.manual
        assert calls(sandbox, "salesforce", "tooling") == 0
        assert calls(sandbox, "salesforce", "describe") == 3


def test_salesforce_dry_run_plans_and_creates_nothing(sandbox: Sandbox) -> None:
    mappings = salesforce_mappings()
    with sf_client(sandbox) as client:
        fields = SalesforceFields(client)
        report = setup(fields, mappings, dry_run=True)
        assert report.status == "planned"
        assert len(report.planned) == 12
        assert not report.created
        assert not report.manual
        assert calls(sandbox, "salesforce", "tooling") == 0
        assert len(missing_targets(fields, mappings)) == 12


def test_salesforce_user_without_customize_application_gets_the_exact_list() -> None:
    mappings = salesforce_mappings()
    with _sandbox(sf_customize_application=False) as sb, sf_client(sb) as client:
        report = setup(SalesforceFields(client), mappings, dry_run=False)
        assert report.status == "action_needed"
        assert not report.created
        assert len(report.manual) == 12
        # the first refusal stops the creates: the others would be refused the same way
        assert calls(sb, "salesforce", "tooling") == 1
        by_name = {m.spec.full_name: m for m in report.manual}
        score = by_name["Account.Health_Score__c"]
        assert "(INSUFFICIENT_ACCESS_OR_READONLY)" in score.detail
        assert report.refused is not None
        assert "Customize Application" in report.refused
        assert score.fix() == (
            "create custom field Account.Health_Score__c (Number, length 3, decimal places 0, "
            'label "Health Score") and give the integration user Edit access to it'
        )
        assert "Text, length 36, External ID, Unique" in by_name["Account.Crmsync_Id__c"].fix()
        assert "Picklist, values key, high, low, tech" in by_name["Account.Tier__c"].fix()
        assert len(missing_targets(SalesforceFields(client), mappings)) == 12


def test_salesforce_tooling_answers_like_salesforce(sandbox: Sandbox) -> None:
    with sf_client(sandbox) as client:
        body = {
            "FullName": "Account.Churn_Note__c",
            "Metadata": {"type": "Text", "label": "Churn note", "length": 80},
        }
        created = client._call(
            "tooling",
            lambda sf: sf.restful("tooling/sobjects/CustomField/", method="POST", json=body),
            None,
        )
        assert created["success"] is True
        assert created["id"].startswith("00N")
        read = client._call(
            "tooling",
            lambda sf: sf.restful(f"tooling/sobjects/CustomField/{created['id']}"),
            None,
        )
        assert read["FullName"] == "Account.Churn_Note__c"
        from simple_salesforce.exceptions import SalesforceMalformedRequest

        sf = client._client()
        with pytest.raises(SalesforceMalformedRequest) as dup:
            sf.restful("tooling/sobjects/CustomField/", method="POST", json=body)
        assert dup.value.content[0]["errorCode"] == "DUPLICATE_DEVELOPER_NAME"
        assert (
            "There is already a field named Churn_Note on Account."
            in (dup.value.content[0]["message"])
        )
        bad = {"FullName": "Account.Big__c", "Metadata": {"type": "Text", "label": "x"}}
        with pytest.raises(SalesforceMalformedRequest) as missing_length:
            sf.restful("tooling/sobjects/CustomField/", method="POST", json=bad)
        assert missing_length.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
        note = {"FullName": "Note.X__c", "Metadata": {"type": "Date", "label": "x"}}
        with pytest.raises(SalesforceMalformedRequest) as on_note:
            sf.restful("tooling/sobjects/CustomField/", method="POST", json=note)
        assert on_note.value.content[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"


def test_hubspot_missing_properties_are_created_in_the_crmsync_group(sandbox: Sandbox) -> None:
    mappings = hubspot_mappings()
    with hs_client(sandbox) as client:
        fields = HubSpotFields(client)
        missing = missing_targets(fields, mappings)
        names = {m.spec.full_name for m in missing}
        assert "companies.crmsync_health_band" in names
        assert {"companies.crmsync_id", "deals.crmsync_id", "notes.crmsync_id"} <= names
        before = read_hubspot(client, mappings.object_names)
        assert worst(findings(before, needs_from(mappings))) is Status.MISSING

        report = setup(fields, mappings, dry_run=False)
        assert report.status == "done"
        assert not report.manual
        assert len(report.created) == len(missing) == 13
        assert missing_targets(fields, mappings) == []
        after = read_hubspot(client, mappings.object_names)
        assert worst(findings(after, needs_from(mappings))) is Status.OK

        props = client._call(
            "p",
            lambda: client._hs.crm.properties.core_api.get_by_name(
                "companies", "crmsync_health_band", _preload_content=False
            ),
            None,
        )
        assert props["groupName"] == "crmsync"
        assert props["type"] == "enumeration"
        assert [o["value"] for o in props["options"]] == list(HEALTH_BANDS)
        unique = client._call(
            "p",
            lambda: client._hs.crm.properties.core_api.get_by_name(
                "deals", "crmsync_id", _preload_content=False
            ),
            None,
        )
        assert unique["hasUniqueValue"] is True

        sandbox.control("POST", "/reset")
        again = setup(fields, mappings, dry_run=False)
        assert again.status == "ready"
        assert not again.planned
        assert calls(sandbox, "hubspot", "properties") == 3  # the three reads, nothing else


def test_hubspot_409_on_create_is_exists_and_compared(sandbox: Sandbox) -> None:
    """A property created by someone else between the read and the create: 409, re-read."""
    mappings = hubspot_mappings()
    with hs_client(sandbox) as client:
        fields = HubSpotFields(client)
        first = fields.read_fields(["companies"])
        client._call(
            "create",
            lambda: client._hs.crm.properties.core_api.create(
                "companies",
                {
                    "name": "crmsync_tier",
                    "label": "Tier",
                    "type": "enumeration",
                    "fieldType": "select",
                    "groupName": "companyinformation",
                    "options": [{"label": "Key", "value": "key", "displayOrder": 0}],
                },
                _preload_content=False,
            ),
            None,
        )

        class Stale:
            """Reads the fields as they were before the competing create, once."""

            def __init__(self) -> None:
                self.first = True

            def read_fields(self, names: Any) -> Any:
                if self.first:
                    self.first = False
                    return {**fields.read_fields(names), "companies": first["companies"]}
                return fields.read_fields(names)

            def create_fields(self, specs: Any) -> Any:
                return fields.create_fields(specs)

        report = setup(Stale(), mappings, dry_run=False)
        assert "companies.crmsync_tier" in {s.full_name for s in report.existed}
        wrong = [m for m in report.manual if m.spec.full_name == "companies.crmsync_tier"]
        assert wrong
        assert wrong[0].problem is Problem.WRONG_TYPE
        assert "without the options high, low, tech" in wrong[0].detail
