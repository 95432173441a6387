"""A small Home Assistant REST client over homeassistant-api's ``AsyncClient``.

homeassistant-api (and its niquests/urllib3-future stack) is imported lazily,
on the first call, and only here: importing it costs about half a second and
the station must be ready within 2 s whether or not Home Assistant is
configured. Every library error leaves as a
``TransientIntegrationError`` (retry later: unreachable, timeout, 5xx) or a
``PermanentIntegrationError`` (retrying will not help: bad token, unknown
entity or service, rejected data).
"""

from __future__ import annotations

import asyncio
import logging
from types import ModuleType
from typing import Any

from station.config import HomeAssistantSection
from station.errors import PermanentIntegrationError, TransientIntegrationError

log = logging.getLogger(__name__)


def _library() -> tuple[ModuleType, ModuleType, ModuleType]:
    import homeassistant_api  # noqa: PLC0415  (lazy on purpose)
    import homeassistant_api.errors as errors  # noqa: PLC0415
    import niquests  # noqa: PLC0415

    return homeassistant_api, errors, niquests


class HomeAssistantClient:
    """One long-lived REST session to Home Assistant, opened on first use and
    re-opened after a failure. One client is shared by the notifier, the
    release actuators and the lock watcher; whoever built it closes it
    (:meth:`close`) at shutdown.

    ``url`` is the base URL (``http://homeassistant.local:8123``), ``token``
    a long-lived access token.
    """

    def __init__(self, url: str, token: str, *, timeout_s: float = 5.0, verify_ssl: bool = True) -> None:
        self._api_url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/api") else "/api")
        self._token = token
        self._timeout_s = timeout_s
        self._verify_ssl = verify_ssl
        self._client: Any = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(cls, section: HomeAssistantSection, **kwargs: Any) -> HomeAssistantClient:
        return cls(section.url, section.token, **kwargs)

    @property
    def api_url(self) -> str:
        return self._api_url

    async def call_service(self, domain: str, service: str, **data: Any) -> None:
        await self._request("call_service", lambda c: c.trigger_service(domain, service, **data), f"{domain}.{service}")

    async def get_state(self, entity_id: str) -> str:
        state = await self._request("get_state", lambda c: c.get_state(entity_id=entity_id), entity_id)
        return str(state.state)

    async def close(self) -> None:
        async with self._lock:
            await self._close_locked()

    async def _close_locked(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _quietly_close(client)

    async def _open(self) -> Any:
        async with self._lock:
            if self._client is None:
                homeassistant_api, _, _ = _library()
                client = homeassistant_api.AsyncClient(
                    self._api_url,
                    self._token,
                    verify_ssl=self._verify_ssl,
                    global_request_kwargs={"timeout": self._timeout_s},
                )
                try:
                    await client.__aenter__()  # GET /api/: checks the URL and the token
                except BaseException:
                    await _quietly_close(client)  # its session already started a pool
                    raise
                self._client = client
            return self._client

    async def _request(self, what: str, call: Any, target: str) -> Any:
        _, errors, niquests = _library()
        try:
            client = await self._open()
            return await asyncio.wait_for(call(client), self._timeout_s * 2)
        except errors.UnauthorizedError as err:
            await self.close()
            raise PermanentIntegrationError(f"Home Assistant refused the token ({self._api_url})") from err
        except (errors.EndpointNotFoundError, errors.MethodNotAllowedError) as err:
            raise PermanentIntegrationError(f"Home Assistant {what} {target}: not found ({err})") from err
        except errors.RequestError as err:  # 400: HA rejected the data (RequestTimeoutError is handled below)
            if isinstance(err, errors.RequestTimeoutError):
                await self.close()
                raise TransientIntegrationError(f"Home Assistant {what} {target}: timeout") from err
            raise PermanentIntegrationError(f"Home Assistant {what} {target}: rejected ({err})") from err
        except (
            errors.HomeassistantAPIError,
            niquests.exceptions.RequestException,
            OSError,
            TimeoutError,
            ValueError,
            TypeError,
        ) as err:
            # 5xx, unexpected status, malformed body, unreachable, timeout
            await self.close()
            raise TransientIntegrationError(f"Home Assistant {what} {target}: {type(err).__name__}: {err}") from err


async def _quietly_close(client: Any) -> None:
    try:
        await client.__aexit__(None, None, None)
    except Exception as err:  # closing a broken session: nothing to save
        log.debug("home assistant: closing session: %s", err)
