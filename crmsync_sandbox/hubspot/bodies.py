"""The JSON request bodies of the HubSpot emulator, as typed models checked before a handler runs.

HubSpot deserialises every body into typed objects and answers a value of the wrong JSON type
with 400 ``VALIDATION_ERROR`` before anything else happens; the emulator does the same here, once,
so that no handler meets ``"abc"`` where it expects an integer and answers a 500 (which a client's
retry logic would take for a transient failure). The models only say what types the fields have;
the handlers keep the rules on values (required fields, allowed operators, limits).

Numbers are accepted for string fields (ids are sent either way) and integer strings for integer
fields, as HubSpot's deserialiser does. Unknown fields are ignored. Values of record properties
stay free-form: :mod:`crmsync_sandbox.hubspot.schema` checks them against each property's type.

Pure module: pydantic only, no imports from the rest of the sandbox.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = ["BODIES", "BodyProblem", "check_body"]

SqlInt = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
"""An integer that fits the 64-bit columns it ends up in."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)


class AssociationSpec(_Body):
    associationCategory: str | None = None
    associationTypeId: SqlInt | None = None


class AssociationTarget(_Body):
    id: str


class InlineAssociation(_Body):
    to: AssociationTarget
    types: list[AssociationSpec]


class AssociationCreateInput(_Body):
    from_: AssociationTarget | None = Field(default=None, alias="from")
    to: AssociationTarget | None = None
    types: list[AssociationSpec] | None = None


class AssociationArchiveInput(_Body):
    from_: AssociationTarget | None = Field(default=None, alias="from")
    to: list[AssociationTarget] | None = None


class AssociationBatchCreate(_Body):
    inputs: list[AssociationCreateInput] | None = None


class AssociationBatchArchive(_Body):
    inputs: list[AssociationArchiveInput] | None = None


class ObjectWrite(_Body):
    """Create (``properties`` + ``associations``) or update (``properties``) of one record."""

    properties: dict[str, str | float | bool | None] | None = None
    associations: list[InlineAssociation] | None = None


class BatchInput(ObjectWrite):
    id: str | None = None
    idProperty: str | None = None
    objectWriteTraceId: str | None = None


class BatchBody(_Body):
    inputs: list[BatchInput] | None = None
    properties: list[str] | None = None
    propertiesWithHistory: list[str] | None = None
    idProperty: str | None = None


class SearchFilter(_Body):
    propertyName: str | None = None
    operator: str | None = None
    value: str | float | bool | None = None
    highValue: str | float | bool | None = None
    values: list[str | float | bool | None] | None = None


class FilterGroup(_Body):
    filters: list[SearchFilter] | None = None


class SearchSort(_Body):
    propertyName: str | None = None
    direction: str | None = None


class SearchBody(_Body):
    filterGroups: list[FilterGroup] | None = None
    filters: list[SearchFilter] | None = None
    sorts: list[SearchSort | str] | SearchSort | str | None = None
    properties: list[str] | None = None
    query: str | None = None
    limit: SqlInt | None = None
    after: str | None = None


class MergeBody(_Body):
    primaryObjectId: str | None = None
    objectIdToMerge: str | None = None


class PropertyOption(_Body):
    label: str | None = None
    value: str | None = None
    displayOrder: SqlInt | None = None
    hidden: bool | None = None


class PropertyCreate(_Body):
    name: str | None = None
    label: str | None = None
    type: str | None = None
    fieldType: str | None = None
    groupName: str | None = None
    description: str | None = None
    displayOrder: SqlInt | None = None
    hasUniqueValue: bool | None = None
    options: list[PropertyOption] | None = None


class GroupCreate(_Body):
    name: str | None = None
    label: str | None = None
    displayOrder: SqlInt | None = None


BODIES: dict[str, TypeAdapter[Any]] = {
    "object": TypeAdapter(ObjectWrite),
    "batch": TypeAdapter(BatchBody),
    "search": TypeAdapter(SearchBody),
    "merge": TypeAdapter(MergeBody),
    "property": TypeAdapter(PropertyCreate),
    "group": TypeAdapter(GroupCreate),
    "association_specs": TypeAdapter(list[AssociationSpec]),
    "association_batch_create": TypeAdapter(AssociationBatchCreate),
    "association_batch_archive": TypeAdapter(AssociationBatchArchive),
}
"""Body kind (named in the route table) -> its model."""


class BodyProblem(ValueError):
    """A body value of the wrong JSON type; ``field`` is its path (``inputs[0].idProperty``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def check_body(kind: str, body: Any) -> Any:
    """``body`` with its values in the model's types (``"190"`` -> ``190``, ``7`` -> ``"7"``),
    as plain JSON; :class:`BodyProblem` names the first field whose JSON type is refused."""
    adapter = BODIES[kind]
    try:
        model = adapter.validate_python(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise BodyProblem(_path(first["loc"]), str(first["msg"])) from None
    return adapter.dump_python(model, mode="json", exclude_unset=True, by_alias=True)


def _path(loc: tuple[int | str, ...]) -> str:
    """``("inputs", 0, "idProperty")`` -> ``inputs[0].idProperty`` (union branch names dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part[:1].isupper() or "[" in part or part in ("str", "int", "float", "bool"):
            continue  # pydantic names the union member it tried (``SearchSort``, ``list[...]``)
        else:
            out += f".{part}" if out else part
    return out
