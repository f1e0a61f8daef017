"""`p3log demo`: the whole loop on its embedded default.

A simulated PayServer, a tap recording into DIR, and the scripted POS running
`fixtures/pos/demo.toml` (approve, refund, abort, signature, sign on receipt, abort
during the signature, decline, capture, tip adjust, busy reader, server error,
dropped connection) through the tap, over real sockets on 127.0.0.1. Then: what was
recorded, the hash-chain check, a checkpoint, and proof that the merchant secret is
in no file of the store; the transactions and findings of the run, and the audit
report next to the store.

Each run starts from a fresh store, so it always holds the same transactions: a demo
store left at DIR by an earlier run (it holds the `DEMO_MARKER` file) is replaced. Any
other non-empty DIR is refused, never deleted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import trio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from p3log.loop import run_through_tap
from p3log.pos.runner import DEMO_MERCHANT_SECRET, StepResult, format_result
from p3log.pos.script import load_script
from p3log.projections.listing import list_findings, list_transactions
from p3log.projections.opening import make_checkpoint, open_log, open_store, verify_store
from p3log.render import OutputFormat, render_findings, render_transactions
from p3log.report import build_report, write_html
from p3log.sim.config import SimConfig
from p3log.store.errors import StoreError

REPOSITORY = Path(__file__).resolve().parents[1]
DEMO_SCRIPT = REPOSITORY / "fixtures" / "pos" / "demo.toml"
NOTEBOOKS = REPOSITORY / "notebooks"
# Fast enough for a demo, slow enough that the abort windows are real.
DEMO_TIME_SCALE = 0.05
DEMO_MARKER = "p3log-demo.txt"
"""The file that makes a store directory one `p3log demo` may replace."""


def fresh_demo_store(root: Path) -> None:
    """Make `root` an empty directory for a new demo store: remove an earlier demo store
    there; refuse (`StoreError`) anything else that is not empty."""
    if root.is_dir() and (root / DEMO_MARKER).is_file():
        shutil.rmtree(root)
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise StoreError(
            f"{root} exists and is not a demo store: remove it, or choose another --store"
        )
    root.mkdir(parents=True, exist_ok=True)
    (root / DEMO_MARKER).write_text(
        "A store `p3log demo` recorded; the next `p3log demo` replaces this directory.\n",
        encoding="utf-8",
    )


def run_demo(root: Path, console: Console) -> None:
    fresh_demo_store(root)
    script = load_script(DEMO_SCRIPT)
    sim = SimConfig.from_files(scenario="default", seed=1, time_scale=DEMO_TIME_SCALE)
    lines: list[str] = []
    with (
        open_log(root) as log,
        Progress(
            TextColumn("POS transactions"), BarColumn(), MofNCompleteColumn(), console=console
        ) as progress,
    ):
        key_file = log.key_file
        # a step with a `meanwhile` reports two results: its own and the one beside it
        results_expected = sum(1 + (step.meanwhile is not None) for step in script.steps)
        task = progress.add_task("pos", total=results_expected)

        def show(result: StepResult) -> None:
            lines.append(format_result(result))
            progress.advance(task)

        results = trio.run(lambda: run_through_tap(log, script, sim, on_result=show))
    for line in lines:
        console.print(line, highlight=False)
    unexpected = sum(result.as_expected is False for result in results)
    console.print(f"{len(results)} transactions, {unexpected} not as scripted\n")

    con = open_store(root)
    try:
        render_transactions(console, list_transactions(con), OutputFormat.table)
        render_findings(console, list_findings(con), OutputFormat.table)
    finally:
        con.close()

    report = verify_store(root)
    verdict = "OK" if report.ok else f"FAILED at {report.problem}"
    console.print(f"verify {verdict}: {report.count} events, head {report.head_hash[:16]}…")
    checkpoint = make_checkpoint(root)
    (root.parent / f"{root.name}.checkpoint.json").write_text(checkpoint.to_json())
    console.print(f"checkpoint written to {root.name}.checkpoint.json (keep it outside the store)")

    files = [path for path in root.rglob("*") if path.is_file()]
    leaks = [path for path in files if DEMO_MERCHANT_SECRET.encode() in path.read_bytes()]
    if leaks:
        console.print(Text(f"the merchant secret was found in {leaks}", style="red"))
    else:
        console.print(f"the merchant secret appears in none of the {len(files)} files of the store")
    assert key_file is not None  # a recording writer always has one
    key = key_file.read_bytes()
    keys_inside = [path for path in files if key in path.read_bytes()]
    if keys_inside:
        console.print(Text(f"the fingerprint key was found in {keys_inside}", style="red"))
    else:
        console.print(
            f"the fingerprint key is kept outside the store ({key_file}), so a copy of the "
            "store cannot be used to test guesses of the secret",
            highlight=False,
        )

    report_path = root.parent / f"{root.name}-report.html"
    write_html(build_report(root), report_path)
    console.print(f"audit report: {report_path} (one self-contained HTML file)")
    console.print(f"notebooks: {NOTEBOOKS} (P3LOG_STORE={root} jupyter lab {NOTEBOOKS})")
    console.print(
        f"next: p3log transactions --store {root}; p3log show --store {root} KEY; "
        f"p3log findings --store {root}"
    )
