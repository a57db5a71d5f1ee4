"""The web page (``xrdid serve``): a FastAPI app that classifies an uploaded powder pattern."""

from xrdid.web.app import create_app

__all__ = ["create_app"]
