"""Turn upstream JSON into models, mapping shape problems to MalformedResponseError."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from license_notifications.errors import MalformedResponseError


def parse_as[M: BaseModel](model: type[M], data: Any, *, service: str, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MalformedResponseError(service, f"unexpected {what}: {where}: {first['msg']}") from None
