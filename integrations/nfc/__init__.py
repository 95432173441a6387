"""NFC: the station's reader (nfcpy, in its own thread) and card emulation
over nfcpy's udp driver for tests, the demo and ``borne tap``."""

from integrations.nfc.reader import NfcReader

__all__ = ["NfcReader"]
