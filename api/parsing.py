"""Request parsing with marshmallow: one thin wrapper per view, documented through flask-smorest."""

from __future__ import annotations

from functools import wraps
from typing import Any, Callable

import marshmallow as ma
import orjson
from flask import request
from flask_smorest import Blueprint
from werkzeug.http import parse_options_header

from api.errors import ApiError


def invalid(messages: Any) -> ApiError:
    return ApiError("invalid_request", "The request is not valid.", fields=messages)


def json_body() -> Any:
    """The current request's JSON body (see `decode_json`)."""
    return decode_json(request.get_data(cache=True), request.content_type)


def decode_json(raw: bytes, content_type: str | None) -> Any:
    """The JSON body ({} when empty): 400 if it is not JSON, 415 if it is sent as another media type."""
    if not raw:
        return {}
    mimetype = parse_options_header(content_type)[0].lower()
    if not (mimetype == "application/json"
            or (mimetype.startswith("application/") and mimetype.endswith("+json"))):
        raise ApiError("unsupported_media_type", "Send the body as application/json.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError("bad_request", "The body is not valid JSON.") from None


def load(schema: ma.Schema, data: Any) -> Any:
    """Validated data, or 422 invalid_request with the messages per field."""
    try:
        return schema.load(data)
    except ma.ValidationError as error:
        # marshmallow raises from a frame that holds the error in a local: dropping the traceback breaks
        # that reference cycle, which a cyclic collection would otherwise have to free (api/hotpath.py).
        error.__traceback__ = None
        raise invalid(error.messages) from None


def arguments(blp: Blueprint, schema: ma.Schema, *, location: str = "json",
              required: bool = True) -> Callable[[Any], Any]:
    """Parse the body or query string with `schema` and pass the result as the view's first argument."""
    documented = blp.arguments(schema, location=location, required=required)

    def decorator(func: Any) -> Any:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if location == "query":
                data = request.args.to_dict(flat=True)
            else:
                if not required and not request.get_data(cache=True):
                    return func(None, *args, **kwargs)
                data = json_body()
            return func(load(schema, data), *args, **kwargs)

        wrapper._apidoc = documented(func)._apidoc  # noqa: SLF001 - docs without webargs' wrapper
        return wrapper

    return decorator
