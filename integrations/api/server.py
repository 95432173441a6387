"""The sync API as a long-lived service for the supervisor."""

from __future__ import annotations

import asyncio
import errno
import logging

from aiohttp import web

from integrations.api.app import create_app
from integrations.api.metrics import MetricsFn
from station.config import ApiSection
from station.errors import PermanentIntegrationError, TransientIntegrationError
from station.ports import SyncTarget

log = logging.getLogger(__name__)


class ApiServer:
    """Serves :func:`create_app` on ``config.listen:config.port`` while ``run`` runs.

    ``port`` is the bound port once ``ready`` is set (useful with port 0).
    Cancelling ``run`` stops listening, lets requests in flight finish for up
    to ``shutdown_timeout`` seconds and releases the socket.
    """

    def __init__(
        self,
        target: SyncTarget,
        config: ApiSection,
        *,
        version: str,
        metrics_fn: MetricsFn | None = None,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self._target = target
        self._config = config
        self._version = version
        self._metrics_fn = metrics_fn
        self._shutdown_timeout = shutdown_timeout
        self.port: int | None = None
        self.ready = asyncio.Event()

    async def run(self) -> None:
        app = create_app(self._target, self._config, metrics_fn=self._metrics_fn, version=self._version)
        # lingering_time: after refusing a large body early (413), aiohttp would go on
        # reading and discarding it for 10 s, holding a stop for as long.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=self._shutdown_timeout,
                               lingering_time=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._config.listen, self._config.port)
            try:
                await site.start()
            except OSError as err:
                where = f"{self._config.listen}:{self._config.port}"
                if err.errno in (errno.EADDRINUSE, errno.EAGAIN):
                    raise TransientIntegrationError(f"sync API cannot listen on {where}: {err.strerror}") from err
                raise PermanentIntegrationError(f"sync API cannot listen on {where}: {err.strerror or err}") from err
            self.port = runner.addresses[0][1]
            log.info("sync API listening on %s:%d", self._config.listen, self.port)
            self.ready.set()
            await asyncio.Event().wait()  # until cancelled
        finally:
            self.ready.clear()
            self.port = None
            await runner.cleanup()
            log.info("sync API stopped")

    async def wait_ready(self) -> int:
        await self.ready.wait()
        assert self.port is not None
        return self.port
