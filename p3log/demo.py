"""`p3log demo`: the whole loop on its embedded default.

A simulated PayServer, a tap recording into DIR, and the scripted POS running
`fixtures/pos/demo.toml` (approve, refund, abort, signature, sign on receipt, abort
during the signature, decline, capture, tip adjust, busy reader, server error,
dropped connection) through the tap, over real sockets on 127.0.0.1. Then: what was
recorded, the hash-chain check, a checkpoint, and proof that the merchant secret is
in no file of the store; the transactions and findings of the run, and the audit
report next to the store.
"""

from __future__ import annotations

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

REPOSITORY = Path(__file__).resolve().parents[1]
DEMO_SCRIPT = REPOSITORY / "fixtures" / "pos" / "demo.toml"
NOTEBOOKS = REPOSITORY / "notebooks"
# Fast enough for a demo, slow enough that the abort windows are real.
DEMO_TIME_SCALE = 0.05


def run_demo(root: Path, console: Console) -> None:
    script = load_script(DEMO_SCRIPT)
    sim = SimConfig.from_files(scenario="default", seed=1, time_scale=DEMO_TIME_SCALE)
    lines: list[str] = []
    with (
        open_log(root) as log,
        Progress(
            TextColumn("POS transactions"), BarColumn(), MofNCompleteColumn(), console=console
        ) as progress,
    ):
        first_seq = log.head[0] + 1
        key_file = log.key_file
        task = progress.add_task("pos", total=len(script.steps))

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
        this_run = (["t.request_seq >= ?"], [first_seq])
        render_transactions(console, list_transactions(con, *this_run), OutputFormat.table)
        render_findings(console, list_findings(con, since_seq=first_seq), OutputFormat.table)
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
