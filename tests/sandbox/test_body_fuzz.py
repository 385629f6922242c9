"""Property test: no request body, however wrong its JSON types, makes the sandbox answer 5xx.

A client's retry logic reads a 5xx as transient, so a body the emulated CRM would refuse must get
a 4xx in that CRM's own error shape (Salesforce: a JSON list of ``{message, errorCode}``; HubSpot:
``{status: "error", message, correlationId, ...}``; the control API: ``{error, field}``).

Every route of the running app is enumerated and sent generated bodies: junk JSON of any type,
objects built from the field names the APIs use, and valid example bodies with one value replaced
by junk. The app is called in process (Starlette's TestClient, no TLS) to keep the run short.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from starlette.testclient import TestClient

from crmsync_sandbox import Sandbox, SandboxConfig
from crmsync_sandbox.control import control_routes
from crmsync_sandbox.fallback import exception_handlers
from crmsync_sandbox.middleware import SandboxMiddleware

EXAMPLES_PER_ROUTE = 15

_FIELD_NAMES_TEXT = (
    "inputs properties associations to id types associationTypeId associationCategory "
    "objectWriteTraceId idProperty filterGroups filters propertyName operator value values "
    "highValue sorts direction limit after query name label type fieldType groupName "
    "displayOrder options hasUniqueValue description primaryObjectId objectIdToMerge allOrNone "
    "records attributes Name Title ParentId AccountId StageName CloseDate Amount Website "
    "operation object externalIdFieldName contentType columnDelimiter lineEnding state Id crm "
    "ids count kind at seconds match routes seed wait hubspot_url dealname hs_timestamp"
)
FIELD_NAMES = _FIELD_NAMES_TEXT.split()

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | st.sampled_from(["abc", "first", "", "1", "190", "EQ", "hs_object_id", "Account"])
)
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=10,
)

COMPANY = "10000000001"  # the first seeded company
NOTE = {"hs_note_body": "x", "hs_timestamp": "2024-01-01T00:00:00.000Z"}
INLINE = [
    {
        "to": {"id": COMPANY},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 190}],
    }
]
SEARCH = {
    "filterGroups": [
        {"filters": [{"propertyName": "hs_object_id", "operator": "GTE", "value": "1"}]}
    ],
    "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
    "properties": ["name"],
    "limit": 10,
    "after": "0",
    "query": "a",
}
PROPERTY = {
    "name": "fz",
    "label": "Fz",
    "type": "string",
    "fieldType": "text",
    "groupName": "companyinformation",
    "displayOrder": 1,
    "hasUniqueValue": False,
    "options": [{"label": "A", "value": "a"}],
}
ACCOUNT = {"Name": "Acme", "Website": "acme.test", "NumberOfEmployees": 3}

# Valid example bodies per route (a regex on "METHOD template"); the fuzz replaces one value, at
# any depth, with a value of another type.
V4_CREATE = {
    "inputs": [
        {
            "from": {"id": "30000000001"},
            "to": {"id": COMPANY},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 190}],
        }
    ]
}
V4_ARCHIVE = {"inputs": [{"from": {"id": "30000000001"}, "to": [{"id": COMPANY}]}]}
PROPERTY_PATCH = {
    "label": "L",
    "groupName": "dealinformation",
    "type": "enumeration",
    "fieldType": "select",
    "displayOrder": 3,
    "options": [{"label": "A", "value": "a", "displayOrder": 1, "hidden": False}],
}
SF_SUBREQUEST = {
    "method": "PATCH",
    "url": "/services/data/v59.0/sobjects/Account/001000000000000AAA",
    "referenceId": "r1",
    "body": {"Name": "A"},
}
EXAMPLES: list[tuple[str, list[Any]]] = [
    (r"POST /crm/v4/associations/.*/batch/create", [V4_CREATE]),
    (r"POST /crm/v4/associations/.*/batch/archive", [V4_ARCHIVE]),
    (r"PATCH /crm/v3/properties/", [PROPERTY_PATCH]),
    (
        r"POST .*/composite/batch",
        [
            {
                "haltOnError": False,
                "batchRequests": [
                    {"method": "GET", "url": "v59.0/sobjects/Account/describe"},
                    {"method": "POST", "url": "v59.0/sobjects/Account", "richInput": ACCOUNT},
                ],
            }
        ],
    ),
    (
        r"POST .*/composite$",
        [
            {
                "allOrNone": True,
                "collateSubrequests": False,
                "compositeRequest": [
                    {
                        **SF_SUBREQUEST,
                        "method": "POST",
                        "url": "/services/data/v59.0/sobjects/Account",
                        "body": ACCOUNT,
                    },
                    SF_SUBREQUEST,
                    {
                        "method": "GET",
                        "url": "/services/data/v59.0/sobjects/Account/@{r1.id}",
                        "referenceId": "r2",
                    },
                ],
            }
        ],
    ),
    (r"PUT .*/associations/default/", [{}]),
    (
        r"PUT .*/associations/",
        [[{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 190}]],
    ),
    (r"POST /crm/v3/objects/\{object_type\}$", [{"properties": NOTE, "associations": INLINE}]),
    (r"PATCH /crm/", [{"properties": {"name": "A", "dealname": "D"}}]),
    (r"POST .*/search", [SEARCH, {"filters": SEARCH["filterGroups"][0]["filters"]}]),
    (r"POST .*/merge", [{"primaryObjectId": COMPANY, "objectIdToMerge": "10000000002"}]),
    (
        r"POST .*/batch/read",
        [{"inputs": [{"id": COMPANY}], "properties": ["name"], "idProperty": "hs_object_id"}],
    ),
    (
        r"POST .*/batch/create",
        [{"inputs": [{"properties": NOTE, "associations": INLINE, "objectWriteTraceId": "t1"}]}],
    ),
    (
        r"POST .*/batch/(update|upsert|archive)",
        [
            {"inputs": [{"id": COMPANY, "properties": {"name": "A"}, "objectWriteTraceId": "t1"}]},
            {"inputs": [{"id": "a-1", "idProperty": "hs_object_id", "properties": {"name": "A"}}]},
        ],
    ),
    (r"POST /crm/v3/properties/\{object_type\}$", [PROPERTY]),
    (r"POST .*/groups", [{"name": "grp", "label": "Group", "displayOrder": 2}]),
    (r"(POST|PATCH) .*/sobjects/", [ACCOUNT, {"Title": "t", "ParentId": "001", "Body": "b"}]),
    (
        r"(POST|PATCH) .*/composite/sobjects",
        [{"allOrNone": False, "records": [{"attributes": {"type": "Account"}, **ACCOUNT}]}],
    ),
    (r"POST .*/jobs/query", [{"operation": "query", "query": "SELECT Id FROM Account"}]),
    (
        r"POST .*/jobs/ingest",
        [{"operation": "upsert", "object": "Account", "externalIdFieldName": "Crmsync_Id__c"}],
    ),
    (r"PATCH .*/jobs/", [{"state": "UploadComplete"}]),
    (
        r"/__sandbox",
        [
            {"crm": "hubspot", "object": "companies", "ids": ["1"], "at": "2024-01-01T00:00:00Z"},
            {"seconds": 1},
        ],
    ),
]
ALL_EXAMPLES = [example for _, examples in EXAMPLES for example in examples]
SWEEP_VALUES: list[Any] = ["abc", [1], {"a": 1}, True, None, 1.5, 2**70]
WRONG_TYPES = st.sampled_from(
    ["abc", "first", "", [1], ["a", "b"], {"a": 1}, {}, True, None, 1.5, -1]
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, (*prefix, index))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], new)
    return copy


@st.composite
def mutated(draw: st.DrawFn, examples: list[Any]) -> Any:
    example = draw(st.sampled_from(examples))
    path = draw(st.sampled_from(list(_paths(example))))
    return _replace(example, path, draw(WRONG_TYPES | junk))


def raw_bodies(route: str) -> st.SearchStrategy[bytes]:
    """Bodies for ``route`` ("METHOD template"): mostly its examples with one value wrong."""
    examples = [e for pattern, found in EXAMPLES if re.search(pattern, route) for e in found]
    own = mutated(examples or ALL_EXAMPLES)
    bodies = st.one_of(
        own,
        own,
        own,
        own,
        mutated(ALL_EXAMPLES),
        junk,
        st.dictionaries(st.sampled_from(FIELD_NAMES), junk, min_size=1, max_size=5),
    )
    return bodies.map(lambda v: json.dumps(v).encode()) | st.sampled_from(
        [b"", b"{", b"nul", b'{"a":1}xx', b"\xff\xfe"]
    )


def _param_values(sb: Sandbox) -> dict[str, list[str]]:
    """Plausible path parameters: real ids and names of the seeded sandbox, plus junk."""
    db = sb.ctx.db
    with sb.ctx.lock:
        account = db.execute('SELECT "Id" FROM sf_account LIMIT 1').fetchone()[0]
        opportunity = db.execute('SELECT "Id" FROM sf_opportunity LIMIT 1').fetchone()[0]
    return {
        "version": ["v59.0", "59.0"],
        "obj": ["Account", "Opportunity", "Note", "User", "Nope"],
        "id": [account, opportunity, "001000000000000AAA", "x"],
        "field": ["Id", "Crmsync_Id__c", "Name"],
        "value": [account, "ext-1", "a/b"],
        "locator": ["01gSn000000000-200", "x"],
        "job": ["750Sn0000000001AAA", "x"],
        "kind": ["successfulResults", "failedResults", "unprocessedRecords", "x"],
        "object_type": ["companies", "notes", "deals", "contacts", "0-2", "nope"],
        "from_type": ["notes", "deals", "companies"],
        "to_type": ["companies", "deals", "notes"],
        "object_id": ["30000000001", COMPANY, "20000000001", "999999", "abc"],
        "to_id": [COMPANY, "20000000001", "abc"],
        "name": ["name", "companyinformation", "nope"],  # first: the values the sweep uses
        "crm": ["salesforce", "hubspot", "nope"],
        "owner_id": ["70000001", "123", "abc"],
    }


@pytest.fixture(scope="module")
def fuzz_sandbox() -> Iterator[Sandbox]:
    config = SandboxConfig(accounts=5, seed=7, hs_rate_limits=False)
    with Sandbox(config) as sb:
        yield sb


def _in_process_app(sb: Sandbox) -> SandboxMiddleware:
    """The same routes and middleware the sandbox serves, callable without TLS."""
    routes: list[BaseRoute] = list(control_routes(sb.ctx, sb.info.to_dict))
    for emulator in sb.ctx.emulators.values():
        routes.extend(emulator.routes())
    app = Starlette(routes=routes, exception_handlers=dict(exception_handlers()))
    return SandboxMiddleware(app, sb.ctx, routes)


def _routes(app: SandboxMiddleware) -> list[tuple[str, str]]:
    """``(method, path template)`` of every route that takes a body (GET ones get one too)."""
    seen: list[tuple[str, str]] = []
    for route in app.routes:
        assert isinstance(route, Route)
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            key = (method, route.path.removesuffix("/") or "/")
            if key not in seen:
                seen.append(key)
    return seen


def _fill(template: str, values: dict[str, list[str]], draw: st.DrawFn) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        return draw(st.sampled_from(values[name]))

    return re.sub(r"\{([^}]+)\}", one, template)


def assert_crm_error_shape(path: str, status: int, body: Any) -> None:
    """The error body of a 4xx, in the shape the path's API uses."""
    if path.startswith("/services/oauth2/"):
        assert set(body) == {"error", "error_description"}, body
    elif path.startswith("/services/"):
        assert isinstance(body, list), body
        assert body, body
        for entry in body:
            assert isinstance(entry["message"], str), body
            assert isinstance(entry["errorCode"], str), body
            assert isinstance(entry.get("fields", []), list), body
    elif path.startswith(("/crm/", "/crm-object-schemas/")):
        assert body["status"] == "error", body
        assert isinstance(body["message"], str), body
        assert isinstance(body["correlationId"], str), body
        if status == 400:
            assert body.get("category") in ("VALIDATION_ERROR", None), body
    elif path.startswith("/oauth/"):
        # HubSpot's OAuth refusals: {"status": "BAD_REFRESH_TOKEN", "message": ...} (B.2.1).
        assert isinstance(body["status"], str), body
        assert isinstance(body["message"], str), body
    else:
        assert isinstance(body["error"], str), body


def _reset(sb: Sandbox) -> None:
    """Undo what a control call may have switched on (faults, expired tokens, frozen clock)."""
    ctx = sb.ctx
    ctx.faults.set_rules([])
    ctx.faults.clear_record_faults()
    ctx.tokens.restore("salesforce")
    ctx.tokens.restore("hubspot")
    ctx.clock.unfreeze()
    ctx.outbox.configure({"hubspot_url": None, "salesforce_url": None, "hold": False})
    ctx.outbox.clear()


def _fuzz_route(
    client: TestClient, sb: Sandbox, method: str, template: str, values: dict[str, list[str]]
) -> None:
    """Send ``EXAMPLES_PER_ROUTE`` generated bodies to one route; fail on a 5xx or a bad shape."""
    headers = _headers(sb, template)

    @settings(
        max_examples=EXAMPLES_PER_ROUTE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data(), raw=raw_bodies(f"{method} {template}"))
    def check(data: st.DataObject, raw: bytes) -> None:
        url = _fill(template, values, data.draw)
        response = client.request(method, url, content=raw, headers=headers)
        _reset(sb)
        assert response.status_code < 500, (method, url, raw, response.text[:300])
        if 400 <= response.status_code < 500:
            assert_crm_error_shape(url, response.status_code, response.json())

    check()


@pytest.fixture(scope="module")
def fuzz_client(fuzz_sandbox: Sandbox) -> Iterator[tuple[TestClient, list[tuple[str, str]]]]:
    app = _in_process_app(fuzz_sandbox)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, _routes(app)


def _headers(sb: Sandbox, path: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if path.startswith("/services/"):
        headers["Authorization"] = f"Bearer {sb.info.salesforce.access_token}"
    elif path.startswith(("/crm/", "/crm-object-schemas/")):
        headers["Authorization"] = f"Bearer {sb.info.hubspot.access_token}"
    return headers


def test_a_wrong_type_in_any_field_of_an_example_body_is_a_4xx(
    fuzz_sandbox: Sandbox, fuzz_client: tuple[TestClient, list[tuple[str, str]]]
) -> None:
    """Every field of every example body, in turn, set to each JSON type (the known 500s were
    one such value: ``associationTypeId: "abc"``, ``displayOrder: "first"``, ...)."""
    client, routes = fuzz_client
    values = _param_values(fuzz_sandbox)
    failures: list[str] = []
    swept = 0
    for method, template in routes:
        route = f"{method} {template}"
        examples = [e for pattern, found in EXAMPLES if re.search(pattern, route) for e in found]
        url = re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: values[m.group(1)][0], template)
        for example in examples:
            for path in _paths(example):
                for wrong in SWEEP_VALUES:
                    body = json.dumps(_replace(example, path, wrong)).encode()
                    response = client.request(
                        method, url, content=body, headers=_headers(fuzz_sandbox, url)
                    )
                    _reset(fuzz_sandbox)
                    swept += 1
                    try:
                        assert response.status_code < 500, response.text[:200]
                        if response.status_code >= 400:
                            assert_crm_error_shape(url, response.status_code, response.json())
                    except AssertionError as exc:
                        failures.append(f"{method} {url} {body[:200]!r}: {exc}"[:400])
    assert swept > 1000
    assert not failures, "\n".join(failures[:30])


def test_no_generated_body_makes_any_route_answer_5xx(
    fuzz_sandbox: Sandbox, fuzz_client: tuple[TestClient, list[tuple[str, str]]]
) -> None:
    client, routes = fuzz_client
    values = _param_values(fuzz_sandbox)
    assert len(routes) > 60  # both emulators and the control API are enumerated
    failures: list[str] = []
    for method, template in routes:
        try:
            _fuzz_route(client, fuzz_sandbox, method, template, values)
        except Exception as exc:  # one line per failing route, then fail once
            failures.append(f"{method} {template}: {exc!r}"[:600])
    assert not failures, "\n".join(failures)


NOTE_ID = "30000000001"  # the first seeded note


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        (
            "PUT",
            f"/crm/v4/objects/notes/{NOTE_ID}/associations/companies/{COMPANY}",
            [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": "abc"}],
            "[0].associationTypeId",
        ),
        (
            "POST",
            "/crm/v3/objects/notes",
            {
                "properties": NOTE,
                "associations": [{"to": {"id": COMPANY}, "types": [{"associationTypeId": "abc"}]}],
            },
            "associations[0].types[0].associationTypeId",
        ),
        (
            "POST",
            "/crm/v3/properties/companies",
            {**PROPERTY, "displayOrder": "first"},
            "displayOrder",
        ),
        (
            "POST",
            "/crm/v3/properties/companies/groups",
            {"name": "g1", "label": "G", "displayOrder": "first"},
            "displayOrder",
        ),
        (
            "POST",
            "/crm/v3/objects/companies/batch/create",
            {"inputs": [{"properties": {"name": "A"}, "objectWriteTraceId": ["t1"]}]},
            "inputs[0].objectWriteTraceId",
        ),
        (
            "POST",
            "/crm/v3/objects/companies/batch/update",
            {"inputs": [{"id": COMPANY, "idProperty": ["x"], "properties": {"name": "A"}}]},
            "inputs[0].idProperty",
        ),
        (
            "POST",
            "/crm/v3/objects/companies/batch/read",
            {"inputs": [{"id": COMPANY}], "idProperty": [1]},
            "idProperty",
        ),
        (
            "POST",
            "/crm/v3/objects/companies/search",
            {"filterGroups": [{"filters": True}]},
            "filterGroups[0].filters",
        ),
    ],
)
def test_the_reported_500s_are_hubspot_validation_errors_naming_the_field(
    fuzz_sandbox: Sandbox,
    fuzz_client: tuple[TestClient, list[tuple[str, str]]],
    method: str,
    path: str,
    body: Any,
    field: str,
) -> None:
    client, _ = fuzz_client
    response = client.request(method, path, json=body, headers=_headers(fuzz_sandbox, path))
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["status"] == "error"
    assert answer["category"] == "VALIDATION_ERROR"
    assert answer["message"].startswith(f"Invalid input JSON: {field}: "), answer["message"]
    assert answer["errors"][0]["in"] == field
    assert isinstance(answer["correlationId"], str)
