"""Replay a recorded session: serve its PayServer side to a live POS (`p3log replay
serve`), drive its POS side against a live server (`p3log replay drive`), and compare
two sessions (`p3log diff`); see docs/replay.md.

Sans-IO core: `recording` (a session as plain data), `incident` (the selected
sessions and the rules between them), `normalise` (volatile paths and the comparable
form of a message), `rewrite` (tags and ids), `divergence`, `plan` (the serve state
machine), `drive_plan` (the drive state machine), `results` and `diff`. Trio edges:
`serve`, `drive`, `drive_incident` and `command`.
"""

from p3log.replay.diff import SessionDiff, diff_sessions, load_diff
from p3log.replay.divergence import Divergence, OnUnexpected
from p3log.replay.drive import DriveConfig, DriveResult, drive_replay
from p3log.replay.drive_incident import drive_incident
from p3log.replay.drive_plan import DrivePlan
from p3log.replay.incident import Incident, SessionSelection, load_incident
from p3log.replay.normalise import VolatilePaths, comparable, normalise
from p3log.replay.plan import Pacing, ServePlan
from p3log.replay.recording import RecordedMessage, RecordedSession, ReplayError, load_session
from p3log.replay.results import ConnectionResult, IncidentResult
from p3log.replay.serve import ServeConfig, ServeResult, serve_incident, serve_replay

__all__ = [
    "ConnectionResult",
    "Divergence",
    "DriveConfig",
    "DrivePlan",
    "DriveResult",
    "Incident",
    "IncidentResult",
    "OnUnexpected",
    "Pacing",
    "RecordedMessage",
    "RecordedSession",
    "ReplayError",
    "ServeConfig",
    "ServePlan",
    "ServeResult",
    "SessionDiff",
    "SessionSelection",
    "VolatilePaths",
    "comparable",
    "diff_sessions",
    "drive_incident",
    "drive_replay",
    "load_diff",
    "load_incident",
    "load_session",
    "normalise",
    "serve_incident",
    "serve_replay",
]
