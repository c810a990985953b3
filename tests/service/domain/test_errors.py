import pytest

from service.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    InvalidState,
    NotFound,
    NotInPair,
    RuleViolation,
    Violation,
)


@pytest.mark.parametrize(
    "cls, code, status",
    [
        (NotFound, "not_found", 404),
        (Conflict, "conflict", 409),
        (InvalidState, "invalid_state", 409),
        (Forbidden, "forbidden", 403),
        (RuleViolation, "rule_violation", 422),
        (NotInPair, "not_in_pair", 422),
        (InvalidInput, "invalid_input", 422),
    ],
)
def test_each_error_knows_its_code_and_http_status(cls, code, status):
    error = cls([]) if cls is RuleViolation else cls("something")
    assert isinstance(error, DomainError)
    assert error.code == code
    assert error.http_status == status


def test_detail_is_the_message():
    error = NotFound("pair 7 not found")
    assert error.detail == "pair 7 not found"
    assert str(error) == "pair 7 not found"


def test_detail_defaults_to_the_title():
    assert Conflict().detail == Conflict.title


def test_code_can_be_set_per_instance_without_touching_the_class():
    error = InvalidState("the pair is dissolved", code="pair_dissolved")
    assert error.code == "pair_dissolved"
    assert InvalidState.code == "invalid_state"
    assert InvalidState("x").code == "invalid_state"


def test_invalid_state_is_not_a_conflict_subclass_but_maps_to_409():
    assert not issubclass(InvalidState, Conflict)
    assert InvalidState.http_status == Conflict.http_status == 409


def test_violation_is_frozen_and_serialises():
    violation = Violation("R2", "plan_spec_mismatch", "tiers differ")
    assert violation.as_dict() == {"rule": "R2", "code": "plan_spec_mismatch", "detail": "tiers differ"}
    with pytest.raises(AttributeError):
        violation.code = "other"  # type: ignore[misc]


def test_rule_violation_carries_its_violations_and_joins_their_details():
    violations = (
        Violation("R1", "model_mismatch", "models differ"),
        Violation("R9", "storage_mismatch", "storage differs"),
    )
    error = RuleViolation(violations)
    assert error.violations == list(violations)
    assert isinstance(error.violations, list)
    assert error.detail == "models differ; storage differs"


def test_rule_violation_takes_an_explicit_detail():
    error = RuleViolation([Violation("R2", "x", "y")], detail="pair cannot be formed")
    assert error.detail == "pair cannot be formed"


def test_rule_violation_without_violations_still_has_a_detail():
    assert RuleViolation([]).detail == RuleViolation.title
