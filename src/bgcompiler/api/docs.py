"""What the OpenAPI schema says about error answers, shared by every route."""

from __future__ import annotations

from typing import Any

from bgcompiler.api.schemas import ErrorBody

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the body is not JSON"},
    413: {"model": ErrorBody, "description": "the body is larger than the cap"},
    401: {"model": ErrorBody, "description": "--require-api-key: no valid API key"},
    403: {"model": ErrorBody, "description": "--require-api-key: past the key's caps"},
    422: {"model": ErrorBody, "description": "a field is invalid, or the image is absent"},
    429: {"model": ErrorBody, "description": "--require-api-key: the key's runs are spent"},
    503: {"model": ErrorBody, "description": "backlog full, engine down, or shutting down"},
}
