"""One root for every error borne raises on purpose.

Adapters convert their library's exceptions into an :class:`IntegrationError`
(``raise ... from err``); nothing from pymodbus, nfcpy, aiomqtt or aiohttp
escapes an adapter.
"""

from __future__ import annotations


class BorneError(Exception):
    """Root of borne's own errors."""


class ConfigError(BorneError):
    """The configuration file is missing, unreadable or invalid.

    The message is one line that names the file and the key path.
    """


class DomainError(BorneError):
    """A rule of the domain was broken by a caller."""


class DocumentRejected(DomainError):
    """A signed roster or reservations document was refused.

    ``code`` is a stable machine-readable reason, ``conflict`` is True when the
    sender should resend a full document (delta on another base).
    """

    def __init__(self, code: str, detail: str, *, conflict: bool = False) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.conflict = conflict


class StorageError(BorneError):
    """The data folder or the SQLite database cannot be used."""


class IntegrationError(BorneError):
    """A device or outside service failed."""


class TransientIntegrationError(IntegrationError):
    """Worth retrying with back-off: timeout, disconnect, busy device."""


class RelayMismatch(TransientIntegrationError):
    """The plug answered, but its relay reads back otherwise than commanded
    (welded contacts, a relay that ignores writes)."""

    def __init__(self, message: str, *, wanted: bool, read: bool) -> None:
        super().__init__(message)
        self.wanted = wanted
        self.read = read


class PermanentIntegrationError(IntegrationError):
    """Retrying will not help: wrong profile, illegal address, bad data type."""
