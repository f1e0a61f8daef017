"""Replay a recorded session: serve its PayServer side to a live POS (`p3log replay
serve`); see docs/replay.md.

Sans-IO core: `recording` (a session as plain data), `normalise` (volatile paths
and the comparable form of a message), `rewrite` (tags and fresh ids), `divergence`
and `plan` (the serve state machine). Trio edges: `serve` and `command`.
"""

from p3log.replay.divergence import Divergence, OnUnexpected
from p3log.replay.normalise import VolatilePaths, comparable, normalise
from p3log.replay.plan import Pacing, ServePlan
from p3log.replay.recording import RecordedMessage, RecordedSession, ReplayError, load_session
from p3log.replay.serve import ServeConfig, ServeResult, serve_replay

__all__ = [
    "Divergence",
    "OnUnexpected",
    "Pacing",
    "RecordedMessage",
    "RecordedSession",
    "ReplayError",
    "ServeConfig",
    "ServePlan",
    "ServeResult",
    "VolatilePaths",
    "comparable",
    "load_session",
    "normalise",
    "serve_replay",
]
