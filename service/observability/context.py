"""The log context: fields every log line of the current request or task carries.

One contextvar holds an immutable mapping, so a thread (gunicorn gthread), a Celery prefork child or
an eager task nested inside a request each see their own fields. `logging.ContextFilter` copies them
onto every record.

    with log_context(pair_id=7, target="cloud_im"):
        ...                       # every log line in here carries pair_id and target

    token = bind(request_id=rid)  # for hooks that open and close in different functions
    reset(token)
"""
from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, Callable, Iterator, Mapping, TypeVar

# The fields the project uses; others may be bound too, these are simply the documented ones.
FIELDS = ("request_id", "org_id", "pair_id", "event_id", "task_id", "task", "target")

_context: ContextVar[Mapping[str, Any]] = ContextVar("ucmha_log_context", default={})

F = TypeVar("F", bound=Callable[..., Any])


def current() -> Mapping[str, Any]:
    """The fields bound now (read-only)."""
    return _context.get()


def bind(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add fields (None values are dropped) and return the token that undoes it."""
    merged = dict(_context.get())
    merged.update({k: v for k, v in fields.items() if v is not None})
    return _context.set(merged)


def reset(token: Token[Mapping[str, Any]]) -> None:
    try:
        _context.reset(token)
    except ValueError:
        # The token was made in another context (a hook ran elsewhere): start clean rather than fail.
        _context.set({})


def clear() -> None:
    _context.set({})


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        reset(token)


def bind_args(*names: str) -> Callable[[F], F]:
    """Decorator: bind the named arguments of each call to the log context for its duration.

        @bind_args("pair_id", "target")
        def check_one(session_factory, client, pair_id, target): ...
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        missing = [n for n in names if n not in signature.parameters]
        if missing:
            raise TypeError(f"{fn.__qualname__} has no parameter(s) {missing}")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = signature.bind_partial(*args, **kwargs).arguments
            except TypeError:
                return fn(*args, **kwargs)  # let the real call raise the real error
            with log_context(**{n: bound.get(n) for n in names}):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
