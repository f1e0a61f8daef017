"""p3log: record, audit and replay PayProtocol (P3) payment-terminal traffic.

The package root imports nothing: `p3log.protocol`, `p3log.client` and `p3log.sim`
stay light (no DuckDB, no pyarrow) for a POS developer who only uses the client
library. `p3log.open_store` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from p3log.projections.opening import open_store

__all__ = ["open_store"]


def __getattr__(name: str) -> Any:
    if name == "open_store":
        from p3log.projections.opening import open_store

        return open_store
    raise AttributeError(f"module 'p3log' has no attribute {name!r}")
