"""The p3log command line (`p3log = "p3log.cli:main"`): one module per area, each
command a thin call into its area.

- `core`: the typer app, error handling, shared options and the conventions;
- `store`: sql, verify, checkpoint, export, import, rebuild;
- `listings`: transactions, show, findings, report;
- `net`: tap, sim, pos;
- `replay`: replay serve, replay drive, diff;
- `demo`: the demo.
"""

from p3log.cli import demo, listings, net, replay, store
from p3log.cli.core import app, main

__all__ = ["app", "demo", "listings", "main", "net", "replay", "store"]
