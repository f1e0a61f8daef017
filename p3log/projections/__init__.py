"""Projections: every transaction's story, rebuilt from the events (docs/projections.md)."""

from p3log.projections.fold import RULES, Projector
from p3log.projections.observed import Observed
from p3log.projections.rows import TABLES
from p3log.projections.store import ProjectionStore

__all__ = ["RULES", "TABLES", "Observed", "ProjectionStore", "Projector"]
