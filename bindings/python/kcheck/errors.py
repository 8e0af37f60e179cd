"""Exceptions raised by kcheck.

Every failure reported by the library becomes a :class:`KcheckError` whose
subclass is chosen by the library's status code (``kcheck_status`` in
``kcheck.h``); the message is the library's own text
(``kcheck_last_error_message()``), read on the thread that made the call.
Several subclasses also derive from the matching built-in exception, so
``except ValueError`` or ``except TimeoutError`` work as expected.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "KcheckError",
    "InvalidArgumentError",
    "InvalidUtf8Error",
    "InvalidConfigError",
    "LeaseLostError",
    "ServiceError",
    "TransportError",
    "CredentialsError",
    "MalformedResponseError",
    "KcheckTimeoutError",
    "InternalError",
    "PanicError",
    "PoisonedError",
    "ConsumerClosedError",
    "ProducerClosedError",
    "WriterClosedError",
    "ForkError",
    "CallbackFailedError",
    "error_for_status",
]

# The library's status codes (enum kcheck_status). Fixed and append-only.
STATUS_OK = 0
STATUS_INVALID_ARGUMENT = 1
STATUS_INVALID_UTF8 = 2
STATUS_TIMED_OUT = 3
STATUS_CLOSED = 4
STATUS_IDLE_TIMEOUT = 5
STATUS_INVALID_CONFIG = 6
STATUS_LEASE_LOST = 7
STATUS_SERVICE_ERROR = 8
STATUS_TRANSPORT_ERROR = 9
STATUS_CREDENTIALS_ERROR = 10
STATUS_MALFORMED_RESPONSE = 11
STATUS_INTERNAL_ERROR = 12
STATUS_PANIC = 13
STATUS_POISONED = 14
STATUS_FORKED = 15
STATUS_CALLBACK_FAILED = 16

STATUS_NAMES: Dict[int, str] = {
    STATUS_OK: "KCHECK_STATUS_OK",
    STATUS_INVALID_ARGUMENT: "KCHECK_STATUS_INVALID_ARGUMENT",
    STATUS_INVALID_UTF8: "KCHECK_STATUS_INVALID_UTF8",
    STATUS_TIMED_OUT: "KCHECK_STATUS_TIMED_OUT",
    STATUS_CLOSED: "KCHECK_STATUS_CLOSED",
    STATUS_IDLE_TIMEOUT: "KCHECK_STATUS_IDLE_TIMEOUT",
    STATUS_INVALID_CONFIG: "KCHECK_STATUS_INVALID_CONFIG",
    STATUS_LEASE_LOST: "KCHECK_STATUS_LEASE_LOST",
    STATUS_SERVICE_ERROR: "KCHECK_STATUS_SERVICE_ERROR",
    STATUS_TRANSPORT_ERROR: "KCHECK_STATUS_TRANSPORT_ERROR",
    STATUS_CREDENTIALS_ERROR: "KCHECK_STATUS_CREDENTIALS_ERROR",
    STATUS_MALFORMED_RESPONSE: "KCHECK_STATUS_MALFORMED_RESPONSE",
    STATUS_INTERNAL_ERROR: "KCHECK_STATUS_INTERNAL_ERROR",
    STATUS_PANIC: "KCHECK_STATUS_PANIC",
    STATUS_POISONED: "KCHECK_STATUS_POISONED",
    STATUS_FORKED: "KCHECK_STATUS_FORKED",
    STATUS_CALLBACK_FAILED: "KCHECK_STATUS_CALLBACK_FAILED",
}


class KcheckError(Exception):
    """A failure reported by kcheck.

    Attributes:
        status: the library's status code (an ``int``, see ``kcheck.h``).
        status_name: its name, e.g. ``"KCHECK_STATUS_SERVICE_ERROR"``.
        message: the library's explanation (also ``str(error)``).
        code: the AWS error code when AWS refused the call (for example
            ``"ResourceNotFoundException"``), else ``None`` — for code that
            acts on it instead of parsing the message (botocore users know
            it as ``error.response["Error"]["Code"]``).
    """

    #: The status this class stands for; instances may carry another one
    #: (a plain KcheckError for a status this package does not know).
    default_status: int = STATUS_INTERNAL_ERROR

    def __init__(self, message: str = "", status: Optional[int] = None, code: Optional[str] = None) -> None:
        # A single positional argument: OSError-derived subclasses would read
        # two as (errno, strerror).
        super().__init__(message)
        self.message: str = message
        self.status: int = self.default_status if status is None else int(status)
        self.code: Optional[str] = code

    @property
    def status_name(self) -> str:
        """The name of :attr:`status`, e.g. ``"KCHECK_STATUS_LEASE_LOST"``."""
        return STATUS_NAMES.get(self.status, "KCHECK_STATUS_UNKNOWN")

    def __str__(self) -> str:
        return self.message or self.status_name

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.status, self.code))


class InvalidArgumentError(KcheckError, ValueError):
    """An argument is missing, malformed or out of range."""

    default_status = STATUS_INVALID_ARGUMENT


class InvalidUtf8Error(InvalidArgumentError):
    """A string argument is not valid UTF-8 (cannot come from a Python ``str``)."""

    default_status = STATUS_INVALID_UTF8


class InvalidConfigError(KcheckError, ValueError):
    """An option or parameter is invalid; the message names it."""

    default_status = STATUS_INVALID_CONFIG


class LeaseLostError(KcheckError):
    """The shard's lease belongs to another consumer now; the checkpoint was refused."""

    default_status = STATUS_LEASE_LOST


class ServiceError(KcheckError):
    """Kinesis or DynamoDB answered with an error (the message has its code)."""

    default_status = STATUS_SERVICE_ERROR


class TransportError(KcheckError, ConnectionError):
    """A request could not reach the service."""

    default_status = STATUS_TRANSPORT_ERROR


class CredentialsError(KcheckError):
    """No usable AWS credentials."""

    default_status = STATUS_CREDENTIALS_ERROR


class MalformedResponseError(KcheckError):
    """A service answered with a body kcheck could not read."""

    default_status = STATUS_MALFORMED_RESPONSE


class KcheckTimeoutError(KcheckError, TimeoutError):
    """An operation's deadline passed."""

    default_status = STATUS_TIMED_OUT


class InternalError(KcheckError):
    """An internal error of kcheck."""

    default_status = STATUS_INTERNAL_ERROR


class PanicError(InternalError):
    """kcheck panicked inside the call; the handle is now unusable."""

    default_status = STATUS_PANIC


class PoisonedError(InternalError):
    """The handle is unusable after an earlier panic."""

    default_status = STATUS_POISONED


class ConsumerClosedError(KcheckError):
    """The consumer was closed: it cannot be iterated or checkpointed any more."""

    default_status = STATUS_CLOSED


class ProducerClosedError(KcheckError):
    """The producer was closed: it takes no more records.

    Raised by :class:`~kcheck.Producer` for ``KCHECK_STATUS_CLOSED``.
    """

    default_status = STATUS_CLOSED


class WriterClosedError(KcheckError):
    """The DynamoDB writer was closed: it takes no more writes.

    Raised by :class:`~kcheck.DynamoDBWriter` for ``KCHECK_STATUS_CLOSED``.
    """

    default_status = STATUS_CLOSED


class ForkError(KcheckError):
    """The object was created in another process, which this one is a fork of.

    Its threads, connections and leases belong to the parent: create a new
    consumer (and checkpointer) in the child.
    """

    default_status = STATUS_FORKED


class CallbackFailedError(KcheckError):
    """A callback stopped the library's work: a pipeline's transform failed.

    :meth:`kcheck.Pipeline.run` raises the transform's own exception instead.
    """

    default_status = STATUS_CALLBACK_FAILED


_BY_STATUS: Dict[int, Type[KcheckError]] = {
    STATUS_INVALID_ARGUMENT: InvalidArgumentError,
    STATUS_INVALID_UTF8: InvalidUtf8Error,
    STATUS_TIMED_OUT: KcheckTimeoutError,
    STATUS_CLOSED: ConsumerClosedError,
    STATUS_INVALID_CONFIG: InvalidConfigError,
    STATUS_LEASE_LOST: LeaseLostError,
    STATUS_SERVICE_ERROR: ServiceError,
    STATUS_TRANSPORT_ERROR: TransportError,
    STATUS_CREDENTIALS_ERROR: CredentialsError,
    STATUS_MALFORMED_RESPONSE: MalformedResponseError,
    STATUS_INTERNAL_ERROR: InternalError,
    STATUS_PANIC: PanicError,
    STATUS_POISONED: PoisonedError,
    STATUS_FORKED: ForkError,
    STATUS_CALLBACK_FAILED: CallbackFailedError,
}


def error_for_status(status: int, message: str, code: Optional[str] = None) -> KcheckError:
    """The exception for a failed call's ``status``, ``message`` and AWS error ``code``."""
    cls = _BY_STATUS.get(status, KcheckError)
    return cls(message, status, code)
