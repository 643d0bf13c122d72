"""Every error the API answers with, mapped in one place to a status code and a `{"detail": "…"}` body whose
wording is the original scheduler's (reference §2.0). Schema errors stay FastAPI's 422."""

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from katsched import errors

logger = logging.getLogger("katsched.api")

RETRY_LATER = {"Retry-After": "60"}


class BadRequest(Exception):
    """A request the API refuses before it reaches the store (400 "Bad request error occurred: …")."""


class ValidationFailed(Exception):
    """A value that fails a domain check, such as a cron expression (400 "Validation error occurred: …")."""


@dataclass(frozen=True)
class Answer:
    status: int
    template: str  # "{}" is replaced by the error's message
    headers: Mapping[str, str] = field(default_factory=dict)


# Looked up along the exception's MRO, so the most specific class wins.
ANSWERS: Mapping[type[Exception], Answer] = {
    errors.NotFound: Answer(404, "Resource not found: {}"),
    errors.InvalidItem: Answer(400, "Bad request error occurred: {}"),
    errors.NotAllowed: Answer(409, "Conflict error occurred: {}", RETRY_LATER),
    errors.InvalidTransition: Answer(409, "Conflict error occurred: {}"),
    errors.QueueFull: Answer(429, "Too many requests"),
    errors.FilterError: Answer(400, "Invalid filter(s): {}"),
    errors.QueueError: Answer(400, "Bad request error occurred: {}"),
    # Unreachable, or locked for longer than the busy timeout: try again shortly.
    errors.StorageUnavailable: Answer(503, "A database error occurred: {}", {"Retry-After": "5"}),
    # A value the database cannot hold (a NUL character, a number out of range): the client's to fix.
    errors.InvalidValue: Answer(400, "Bad request error occurred: {}"),
    errors.StorageError: Answer(500, "A database error occurred: {}"),
    errors.ServiceError: Answer(503, "A service is unavailable: {}"),
    errors.KatschedError: Answer(500, "Internal error: {}"),
    BadRequest: Answer(400, "Bad request error occurred: {}"),
    ValidationFailed: Answer(400, "Validation error occurred: {}"),
}


def answer_for(error: Exception) -> Answer:
    for cls in type(error).__mro__:
        if cls in ANSWERS:
            return ANSWERS[cls]
    return Answer(500, "Internal server error")


# The errors answered by `known_error_response`; any other is a 500 with the traceback logged.
KNOWN_ERRORS = (errors.KatschedError, BadRequest, ValidationFailed)


def known_error_response(error: Exception) -> JSONResponse:
    found = answer_for(error)
    if found.status >= 500:
        logger.warning("api_error status=%d error=%r", found.status, str(error))
    return JSONResponse({"detail": found.template.format(error)}, found.status, dict(found.headers))


def unexpected_error_response(path: str, error: Exception) -> JSONResponse:
    """A bug: the traceback is logged, the client gets a 500 that says nothing of it."""
    logger.error("api_unhandled_error path=%s", path, exc_info=error)
    return JSONResponse({"detail": "Internal server error"}, 500)


async def _known(_request: Request, error: Exception) -> JSONResponse:
    return known_error_response(error)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    return unexpected_error_response(request.url.path, error)


def install_error_handlers(app: FastAPI) -> None:
    for cls in KNOWN_ERRORS:
        app.add_exception_handler(cls, _known)
    app.add_exception_handler(Exception, _unexpected)
