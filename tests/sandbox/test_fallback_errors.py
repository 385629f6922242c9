"""Unknown paths and methods answer in the JSON error envelope of the CRM the path belongs to
(issue 16, item 5), never Starlette's plain-text "Not Found"."""

from __future__ import annotations

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceResourceNotFound

from crmsync_sandbox import Sandbox


def test_salesforce_unknown_resource_through_simple_salesforce(
    salesforce_client: Salesforce,
) -> None:
    with pytest.raises(SalesforceResourceNotFound) as info:
        salesforce_client.restful("no/such/resource")
    assert info.value.content == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]


@pytest.mark.parametrize("path", ["/services/nope", "/services/data/v59.0/a/b/c/d/e/f"])
def test_salesforce_unknown_paths_are_json_404(
    sandbox: Sandbox, sf_session: requests.Session, path: str
) -> None:
    response = sf_session.get(sandbox.base_url + path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]


def test_salesforce_wrong_method_is_json_405(
    sandbox: Sandbox, sf_session: requests.Session
) -> None:
    response = sf_session.delete(sandbox.base_url + "/services/data")
    assert response.status_code == 405
    assert response.json() == [
        {
            "message": "HTTP Method 'DELETE' not allowed. Allowed are GET,HEAD",
            "errorCode": "METHOD_NOT_ALLOWED",
        }
    ]
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("method", "path", "status", "category"),
    [
        ("GET", "/crm/v3/nope", 404, "OBJECT_NOT_FOUND"),
        ("GET", "/crm/v99/objects/companies/1/2/3/4", 404, "OBJECT_NOT_FOUND"),
        ("PUT", "/crm/v3/objects/companies", 405, "VALIDATION_ERROR"),
    ],
)
def test_hubspot_unknown_paths_and_methods_are_hubspot_errors(
    sandbox: Sandbox,
    sf_session: requests.Session,
    method: str,
    path: str,
    status: int,
    category: str,
) -> None:
    response = sf_session.request(
        method,
        sandbox.base_url + path,
        headers={"Authorization": f"Bearer {sandbox.info.hubspot.access_token}"},
    )
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"status", "message", "correlationId", "category"}
    assert body["status"] == "error"
    assert body["category"] == category
    assert body["correlationId"] == response.headers["x-hubspot-correlation-id"]
    if status == 405:
        assert response.headers["allow"] == "GET, HEAD, POST"
