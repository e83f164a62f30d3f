"""The typed errors of the system: one hierarchy, translated at every adapter boundary.

Nothing from boto3, stomp.py, pika or zstandard escapes an adapter; callers catch these.
Each message is one line that says what was wrong and with what.
"""

from __future__ import annotations


class EventIndexError(Exception):
    """Base of every error this system raises on purpose."""


class ConfigError(EventIndexError):
    """A URL, name or option is invalid."""


class InvalidNameError(ConfigError):
    """A task/job/attempt/dataset name that would be unsafe as a key or path."""


class InputError(EventIndexError):
    """An input file is unreadable, truncated or inconsistent."""


class CodecError(EventIndexError):
    """An object is not a valid chunk or manifest."""


class CorruptObjectError(CodecError):
    """Bad magic, bad header, checksum mismatch or undecodable body."""


class TruncatedObjectError(CodecError):
    """The object is shorter than its header says."""


class OversizedObjectError(CodecError):
    """The object, or what it decompresses to, exceeds the configured limit (zstd bomb guard)."""


class UnsupportedVersionError(CodecError):
    """A format or schema version this build does not know."""


class StoreError(EventIndexError):
    """An object-store operation failed."""


class ObjectExistsError(StoreError):
    """A write-once key was written before: the second writer loses."""


class ObjectNotFoundError(StoreError):
    """The object does not exist."""


class StoreUnavailableError(StoreError):
    """The store did not answer, or answered with a retryable failure, after the retries."""


class StoreAccessError(StoreError):
    """The store refuses this client whatever it asks: credentials, permissions, certificate or clock, or
    the bucket is gone. Waiting does not fix it; a service stops on it rather than retry every message for ever."""


class ForbiddenLocationError(StoreError):
    """A URL points outside the configured store (bucket, prefix or endpoint)."""


class TransportError(EventIndexError):
    """A broker operation failed."""


class BrokerConnectionError(TransportError):
    """The broker could not be reached or dropped the connection."""


class MessageError(EventIndexError):
    """A message body could not be understood."""


class StateError(EventIndexError):
    """The service's own durable state (its ledger, its warehouse) could not be read or written."""


class NeedsAttentionError(EventIndexError):
    """A valid request that cannot be carried out now: an operator has to look at what it names."""


class NothingToDoError(EventIndexError):
    """A valid request that found nothing to do: not a failure, but said in one line."""


class WarehouseError(StateError):
    """Writing the warehouse failed."""


class WarehouseUnavailableError(WarehouseError):
    """The warehouse did not answer, or answered with a retryable failure, after the retries: waiting may fix it."""


class AlreadyCommittedError(WarehouseError):
    """The task was committed by someone else (its commit marker exists)."""
