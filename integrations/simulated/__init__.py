"""In-memory stand-ins for the station's devices, driven by the injected clock.

Used by the scripted scenario (``borne demo --scenario``), by service-layer
tests and for bays configured with ``transport: simulated``. They implement
the same ports as the real adapters and fail the same way (IntegrationError).
"""

from integrations.simulated.devices import AmiBattery, SimulatedPlug, SimulatedReader, SimulatedRelease

__all__ = ["AmiBattery", "SimulatedPlug", "SimulatedReader", "SimulatedRelease"]
