from __future__ import annotations

import pytest


@pytest.fixture(params=["ws", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every test that takes it runs over WebSocket and over framed TCP."""
    return str(request.param)
