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
    """Base of every error the domain raises on purpose.

    Each kind of error names its stable ``code``, its ``title`` and the ``http_status`` the API
    answers with as class keywords, one line a kind: ``class NotFound(DomainError, code="not_found",
    title="Not found", http_status=404)``. What a kind leaves out it takes from its base.
    """

    code: str = "domain_error"
    title: str = "Domain rule failed"
    http_status: int = 422

    def __init_subclass__(
        cls, *, code: str | None = None, title: str | None = None, http_status: int | None = None, **kwargs: object
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.code = code or cls.code
        cls.title = title or cls.title
        cls.http_status = http_status or cls.http_status

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        self.detail: str = detail or self.title
        if code is not None:
            # Per instance, so one class can carry several stable machine codes.
            self.code = code
        super().__init__(self.detail)


class InvalidInput(DomainError, code="invalid_input", title="Invalid input", http_status=422):
    """Well-formed but unusable input, such as an unknown role in a node's report."""


class NotFound(DomainError, code="not_found", title="Not found", http_status=404):
    """No such object in the caller's organization."""


class Conflict(DomainError, code="conflict", title="Conflict with the current state", http_status=409):
    """The request would clash with what exists (a MAC or a name already taken)."""


class InvalidState(DomainError, code="invalid_state", title="Not allowed in the current state", http_status=409):
    """The object exists but is in a state that does not allow the action (e.g. dissolved)."""


class Forbidden(DomainError, code="forbidden", title="Forbidden", http_status=403):
    """The caller may not do this."""


class NotInPair(DomainError, code="not_in_pair", title="Device is not a member of this pair", http_status=422):
    """A MAC named as a member of a pair (claimant, reporter, resolve target) is not one."""


class RuleViolation(DomainError, code="rule_violation", title="The request breaks a rule", http_status=422):
    """One or more rules of domain.md are broken; the API lists them as ``violations``."""

    def __init__(self, violations: Iterable[Violation], detail: str | None = None) -> None:
        self.violations: list[Violation] = list(violations)
        if detail is None:
            detail = "; ".join(v.detail for v in self.violations) or self.title
        super().__init__(detail)
