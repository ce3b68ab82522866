"""Every error secagg raises on purpose, in one place.

Three kinds of failure are kept apart, so a caller can react to each:

* the caller used the library wrongly (:class:`ParameterError`, :class:`SessionStateError`);
* a peer cheated or sent garbage (:class:`ProtocolViolation`, :class:`MalformedMessage`);
* the protocol cannot finish, e.g. too many parties dropped out (:class:`AbortError`).

Every refusal is raised before the refusing object changes any state, so the object can go on
with the next (valid) input.
"""

from __future__ import annotations

__all__ = [
    "SecAggError",
    "ParameterError",
    "TrainingDiverged",
    "SessionStateError",
    "CryptoError",
    "ProtocolViolation",
    "MalformedMessage",
    "AbortError",
]


class SecAggError(Exception):
    """Base class of every error raised by secagg on purpose."""


class ParameterError(SecAggError, ValueError):
    """A configuration value, input vector or argument passed by the caller is invalid."""


class TrainingDiverged(ParameterError):
    """Local training produced NaN or infinite weights: the settings (learning rate), the data, or
    the starting weights do not train. Over the network the starting weights and the settings are
    the coordinator's, so a participant refuses them (:class:`ProtocolViolation`) instead."""


class SessionStateError(SecAggError, RuntimeError):
    """A session method was called in a state where it makes no sense (caller's mistake)."""


class CryptoError(SecAggError):
    """A cryptographic check failed: bad key bytes, failed authentication, invalid signature."""


class ProtocolViolation(SecAggError):
    """A peer sent something the protocol forbids (wrong round, unknown id, bad signature, ...).

    ``party`` names the offending party when known: a client id for messages the server
    received, or ``"server"`` for messages a client received.
    """

    def __init__(self, message: str, *, party: int | str | None = None) -> None:
        super().__init__(message)
        self.party = party


class MalformedMessage(ProtocolViolation):
    """Bytes that are not a valid, canonically encoded protocol message."""


class AbortError(SecAggError):
    """The protocol cannot finish, e.g. fewer than ``threshold`` clients remain in a round."""

    def __init__(self, message: str, *, round: str | None = None) -> None:  # noqa: A002
        super().__init__(message)
        self.round = round
