"""Gravix: a self-hosted, data-first health monitor for HTTP services.

Services send one JSON fact per served request; Gravix keeps the facts durably,
rolls them up into per-minute Parquet metrics and answers SQL over them.
"""

from gravix.errors import GravixError

__version__ = "0.1.0"

__all__ = ["GravixError", "__version__"]
