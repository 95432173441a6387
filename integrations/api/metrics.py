"""Prometheus metrics of the API and of the station, on a private registry.

Request counts are recorded as requests are served; everything else is read
from the station's snapshot at scrape time, so the numbers are never stale and
nothing has to be pushed into this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.process_collector import ProcessCollector

from station.model import StationSnapshot

MetricsFn = Callable[[], Iterable[Metric]]


class _SnapshotCollector:
    def __init__(self, snapshot: Callable[[], StationSnapshot], extra: MetricsFn | None) -> None:
        self._snapshot = snapshot
        self._extra = extra

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        info = InfoMetricFamily("borne_station", "The station and its software", labels=("station", "software_version"))
        info.add_metric((snap.station, snap.version), {})
        yield info

        roster = snap.roster
        yield GaugeMetricFamily("borne_roster_version", "Version of the roster in force (0: none)", value=roster.version if roster else 0)
        yield GaugeMetricFamily("borne_roster_size", "Members in the roster in force", value=roster.size if roster else 0)
        if roster is not None and roster.expires_at is not None:
            yield GaugeMetricFamily(
                "borne_roster_expires_timestamp_seconds", "When the roster in force expires", value=roster.expires_at.timestamp()
            )
        yield GaugeMetricFamily("borne_reservations_version", "Version of the reservations in force", value=snap.reservations_version)
        yield GaugeMetricFamily("borne_journal_last_seq", "Last seq written to the journal", value=snap.journal_last_seq)
        yield GaugeMetricFamily("borne_journal_acked_seq", "Last seq acknowledged by the central server", value=snap.journal_acked_seq)
        yield GaugeMetricFamily("borne_clock_trusted", "1 when the wall clock is trusted", value=int(snap.clock_trusted))
        yield GaugeMetricFamily("borne_unknown_cards_per_minute", "Unknown or invalid credentials per minute", value=snap.unknown_card_rate)

        power = GaugeMetricFamily("borne_bay_power_watts", "Power drawn at the bay's plug", labels=("bay",))
        energy = CounterMetricFamily("borne_bay_energy_kwh", "Lifetime energy counter of the bay's plug", labels=("bay",))
        relay = GaugeMetricFamily("borne_bay_relay_on", "1 when the bay's plug relay is on", labels=("bay",))
        reachable = GaugeMetricFamily("borne_bay_plug_reachable", "1 when the bay's plug answers", labels=("bay",))
        present = GaugeMetricFamily("borne_bay_vehicle_present", "1 when a car is parked at the bay", labels=("bay",))
        for bay in snap.bays:
            if bay.power_w is not None:
                power.add_metric((bay.bay,), bay.power_w)
            if bay.energy_kwh is not None:
                energy.add_metric((bay.bay,), bay.energy_kwh)
            if bay.relay_on is not None:
                relay.add_metric((bay.bay,), int(bay.relay_on))
            reachable.add_metric((bay.bay,), int(bay.plug_reachable))
            present.add_metric((bay.bay,), int(bay.vehicle is not None))
        yield from (power, energy, relay, reachable, present)
        if self._extra is not None:
            yield from self._extra()


class ApiMetrics:
    """The registry behind ``GET /metrics``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, snapshot: Callable[[], StationSnapshot], extra: MetricsFn | None = None, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "borne_api_requests",
            "Sync API requests by route and status",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "borne_api_request_duration_seconds",
            "Time to answer a sync API request",
            ("route",),
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.registry.register(_SnapshotCollector(snapshot, extra))
        if process:
            ProcessCollector(registry=self.registry)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
