"""GET /v1/status and GET /metrics."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from integrations.api import create_app
from tests.integrations.api.conftest import AUTH, api_config


async def test_status_shape(client, target):
    resp = await client.get("/v1/status", headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body == {
        "station": "hede",
        "name": "Hédé-Bazouges, place de la mairie",
        "software_version": "0.1.0",
        "mode": "normal",
        "state": "ok",
        "clock_trusted": False,
        "last_sync": None,
        "unknown_card_rate": 0.0,
        "roster": None,
        "reservations": {"version": 0},
        "journal": {"last_seq": 25, "acked_seq": 0, "backlog": 25},
        "bays": [
            {
                "bay": "1",
                "home_vehicle": "ami-1",
                "vehicle": "ami-1",
                "state": "charging",
                "relay_on": True,
                "power_w": 1730.5,
                "energy_kwh": 412.25,
                "plug_reachable": True,
                "open_trip_id": None,
            },
            {
                "bay": "2",
                "home_vehicle": "ami-2",
                "vehicle": None,
                "state": "released",
                "relay_on": None,
                "power_w": None,
                "energy_kwh": None,
                "plug_reachable": False,
                "open_trip_id": "t-9",
            },
        ],
        "alerts": [],
    }


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_parse_and_carry_the_snapshot(client, target):
    await client.get("/v1/status", headers=AUTH)
    await client.get("/v1/nope", headers=AUTH)
    resp = await client.get("/metrics", headers=AUTH)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = _samples(await resp.text())
    assert samples[("borne_journal_last_seq", ())] == 25
    assert samples[("borne_journal_acked_seq", ())] == 0
    assert samples[("borne_roster_version", ())] == 0
    assert samples[("borne_clock_trusted", ())] == 0
    assert samples[("borne_bay_power_watts", (("bay", "1"),))] == 1730.5
    assert samples[("borne_bay_energy_kwh_total", (("bay", "1"),))] == 412.25
    assert samples[("borne_bay_relay_on", (("bay", "1"),))] == 1
    assert ("borne_bay_power_watts", (("bay", "2"),)) not in samples  # unknown is absent, not 0
    assert samples[("borne_bay_plug_reachable", (("bay", "2"),))] == 0
    assert samples[("borne_station_info", (("software_version", "0.1.0"), ("station", "hede")))] == 1
    key = ("borne_api_requests_total", (("method", "GET"), ("route", "status"), ("status", "200")))
    assert samples[key] == 1
    assert samples[("borne_api_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1


async def test_unauthorized_requests_are_counted(client):
    await client.get("/v1/status")
    samples = _samples(await (await client.get("/metrics", headers=AUTH)).text())
    assert samples[("borne_api_requests_total", (("method", "GET"), ("route", "status"), ("status", "401")))] == 1


async def test_extra_metrics_from_metrics_fn(target):
    from aiohttp.test_utils import TestClient, TestServer

    def extra():
        yield GaugeMetricFamily("borne_supervisor_restarts", "Restarts", value=2)

    app = create_app(target, api_config(), metrics_fn=extra, version="0")
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as c:
        samples = _samples(await (await c.get("/metrics", headers=AUTH)).text())
    assert samples[("borne_supervisor_restarts", ())] == 2


async def test_two_apps_in_one_process_have_separate_registries(target):
    create_app(target, api_config(), version="0")
    create_app(target, api_config(), version="0")  # would raise "Duplicated timeseries" on a shared registry


async def test_request_labels_stay_bounded(client):
    for i, method in enumerate(("PROPFIND", "MKCOL", "LOCK", "SEARCH", "PURGE")):
        await client.request(method, f"/random/{i}")
    samples = _samples(await (await client.get("/metrics", headers=AUTH)).text())
    odd = [k for k in samples if k[0] == "borne_api_requests_total" and dict(k[1])["method"] == "other"]
    assert odd == [("borne_api_requests_total", (("method", "other"), ("route", "unmatched"), ("status", "401")))]
    assert samples[odd[0]] == 5
