"""p3log: record, audit and replay PayProtocol (P3) payment-terminal traffic."""

from p3log.projections.opening import open_store

__all__ = ["open_store"]
