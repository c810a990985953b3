"""Errors the domain raises, each knowing the HTTP status the API maps it to.

The API turns any :class:`DomainError` into an RFC 9457 problem document from ``code``,
``detail`` and ``http_status`` (plus ``violations`` for :class:`RuleViolation`), so the
domain never needs to know about Flask and the API never needs a table of exception types.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    """One broken rule: ``rule`` is a domain.md id (``R2``) or ``membership``."""

    rule: str
    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "code": self.code, "detail": self.detail}


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    code: str = "domain_error"
    title: str = "Domain rule failed"
    http_status: int = 422

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        self.detail: str = detail or self.title
        if code is not None:
            # Per instance, so one class can carry several stable machine codes.
            self.code = code
        super().__init__(self.detail)


class InvalidInput(DomainError):
    """Well-formed but unusable input, such as an unknown role in a node's report."""

    code = "invalid_input"
    title = "Invalid input"
    http_status = 422


class NotFound(DomainError):
    code = "not_found"
    title = "Not found"
    http_status = 404


class Conflict(DomainError):
    code = "conflict"
    title = "Conflict with the current state"
    http_status = 409


class InvalidState(DomainError):
    """The object exists but is in a state that does not allow the action (e.g. dissolved)."""

    code = "invalid_state"
    title = "Not allowed in the current state"
    http_status = 409


class Forbidden(DomainError):
    code = "forbidden"
    title = "Forbidden"
    http_status = 403


class NotInPair(DomainError):
    """A MAC named as a member of a pair (claimant, reporter, resolve target) is not one."""

    code = "not_in_pair"
    title = "Device is not a member of this pair"
    http_status = 422


class RuleViolation(DomainError):
    """One or more rules of domain.md are broken; the API lists them as ``violations``."""

    code = "rule_violation"
    title = "The request breaks a rule"
    http_status = 422

    def __init__(self, violations: Iterable[Violation], detail: str | None = None) -> None:
        self.violations: list[Violation] = list(violations)
        if detail is None:
            detail = "; ".join(v.detail for v in self.violations) or self.title
        super().__init__(detail)
