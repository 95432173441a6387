"""The sync API served by the station (aiohttp): see DESIGN §5."""

from integrations.api.app import create_app, openapi_document
from integrations.api.server import ApiServer

__all__ = ["ApiServer", "create_app", "openapi_document"]
