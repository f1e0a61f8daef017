"""p3log: record, audit and replay PayProtocol (P3) payment-terminal traffic."""

from p3log.store.read import open_store

__all__ = ["open_store"]
