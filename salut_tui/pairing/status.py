"""What the pairing service tells the UI, the control routes and `salut pair`: a frozen status
and one error type, both carrying a typed `FailureReason` (words come from `reasons.TABLE`)."""

from __future__ import annotations

from dataclasses import dataclass

from salut_tui.pairing.machine import Role, State
from salut_tui.pairing.reasons import FailureReason, describe


class PairingError(Exception):
    def __init__(self, message: str, reason: FailureReason, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class PairingStatus:
    role: Role | None
    state: State
    code: str | None  # only while waiting
    expires_in: float | None  # seconds, only while waiting
    peer: str | None  # the other side's name (host) or the address typed (joiner)
    failures: int  # failed attempts against this node's codes, all sources still remembered
    retry_after: float  # the longest wait a failed source still has before its next try
    reason: FailureReason | None = None  # why the last attempt failed, when it did

    @property
    def detail(self) -> str:
        """The failure in words ("" when nothing failed)."""
        return describe(self.reason, self.peer or "") if self.reason is not None else ""

    def to_json(self) -> dict:
        return {
            "role": self.role.value if self.role else None,
            "state": self.state.value,
            "code": self.code,
            "expires_in": self.expires_in,
            "peer": self.peer,
            "failures": self.failures,
            "retry_after": self.retry_after,
            "reason": self.reason,
            "detail": self.detail,
        }
