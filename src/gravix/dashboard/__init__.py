"""The browser dashboard and its JSON data API (DESIGN §10), served from the warehouse.

``app`` (routes, access), ``auth`` (keys, sessions, loopback), ``params`` (the API's
parameters), ``api`` (the answers), ``assets`` (the page's files, plotly.js from the
installed wheel), ``server`` (uvicorn), ``static/`` (the page: HTML, JS, CSS).
"""

from __future__ import annotations

from gravix.dashboard.api import Data
from gravix.dashboard.app import create_app
from gravix.dashboard.server import running, serve

__all__ = ["Data", "create_app", "running", "serve"]
