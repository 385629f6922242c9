"""Wire helpers shared by the REST and Bulk handlers: the request view, responses, errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.responses import Response

JSON_TYPE = "application/json;charset=UTF-8"


@dataclass
class Call:
    """One API request after routing (``version`` without the ``v``)."""

    method: str
    path: str
    version: str
    params: QueryParams
    headers: Headers
    body: bytes
    base_url: str  # scheme://host:port of the request
    path_params: dict[str, str]

    def group(self, name: str) -> str:
        return self.path_params[name]

    def require(self, *methods: str) -> None:
        """405 ``METHOD_NOT_ALLOWED`` unless the request uses one of ``methods``."""
        if self.method not in methods:
            raise ApiError(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{self.method}' not allowed. Allowed are {','.join(methods)}",
            )

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise ApiError(
                400, "JSON_PARSER_ERROR", f"Unexpected character in request body: {exc}"
            ) from exc

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise ApiError(
                400,
                "JSON_PARSER_ERROR",
                "Cannot deserialize instance of object from a non-object value",
            )
        return data


class ApiError(Exception):
    """Answer the request with ``[{"message","errorCode"}]`` and ``status``."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def response(self) -> Response:
        body: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            body["fields"] = self.fields
        return json_response([body], self.status)


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        media_type=JSON_TYPE,
        headers=dict(headers or {}),
    )


def empty(status: int = 204) -> Response:
    return Response(b"", status_code=status)


def not_found_error() -> ApiError:
    return ApiError(404, "NOT_FOUND", "The requested resource does not exist")


Handler = Callable[[Call], Response]
