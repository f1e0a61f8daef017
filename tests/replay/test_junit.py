"""`replay serve/drive --junit FILE`: the report validates against the common JUnit
schema (tests/fixtures/junit-10.xsd, the Jenkins xUnit plugin's), a run that played
its recording is a passed case, a diverging POS a failed case naming the divergence,
and hostile recorded text leaves the XML well-formed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import xmlschema

from p3log.pos.runner import run_script
from p3log.pos.script import load_script
from p3log.replay.command import EXIT_DIVERGED, run_drive_command, run_serve_command
from p3log.replay.divergence import Arrival, Divergence, Expectation
from p3log.replay.drive import DriveConfig
from p3log.replay.junit import ReplayCase, failure_of, junit_xml, write_report
from p3log.replay.normalise import Difference
from p3log.replay.plan import Pacing
from tests.replay.conftest import FixtureStores
from tests.replay.sessions import FIXTURES
from tests.replay.test_command import Lines, config_for, run_with_pos
from tests.replay.test_drive import run_sim_thread
from tests.replay.test_serve import abort_instead_of_signing

SCHEMA = xmlschema.XMLSchema(Path(__file__).resolve().parents[1] / "fixtures" / "junit-10.xsd")


def read_report(path: Path) -> ET.Element:
    SCHEMA.validate(str(path))
    return ET.parse(path).getroot()


def test_a_run_that_played_its_recording_is_a_passed_case(
    tmp_path: Path, fixture_stores: FixtureStores
) -> None:
    session_id = fixture_stores.copy("decline", tmp_path / "store")
    script = load_script(FIXTURES / "pos" / "decline.toml")

    async def pos(url: str) -> Any:
        return await run_script(script, url, secret="s")

    report = tmp_path / "report.xml"
    code, _, _ = run_with_pos(config_for(tmp_path / "store", session_id, asap=True), pos, report)
    assert code == 0
    root = read_report(report)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "0")
    (suite,) = root
    (case,) = suite.iter("testcase")
    assert case.get("name") == session_id and list(case) == []
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["outcome"] == "complete"
    assert properties["pos_matched"] == properties["pos_recorded"] == "2"
    assert properties["replay_session"].startswith("replay-")
    assert float(properties["duration_s"]) > 0


def test_a_diverging_pos_is_a_failed_case_naming_the_divergence(
    tmp_path: Path, fixture_stores: FixtureStores
) -> None:
    session_id = fixture_stores.copy("signature", tmp_path / "store")
    report = tmp_path / "report.xml"
    config = config_for(tmp_path / "store", session_id, asap=True)
    code, _, _ = run_with_pos(config, abort_instead_of_signing, report)
    assert code == EXIT_DIVERGED
    root = read_report(report)
    assert (root.get("tests"), root.get("failures")) == ("1", "1")
    (failure,) = root.iter("failure")
    message = failure.get("message") or ""
    assert message.startswith("diverged: the POS sent ABORT_TRANSACTION_REQUEST")
    assert "the recording expected SUBMIT_SIGNATURE_REQUEST (seq 12)" in message
    text = failure.text or ""
    assert "arrived: ABORT_TRANSACTION_REQUEST" in text
    assert "expected: SUBMIT_SIGNATURE_REQUEST (seq 12)" in text


def test_every_differing_path_is_named() -> None:
    arrival = Arrival("X", "t", None, {"type": "X", "a": 1, "b": {"c": 2}}, b"")
    expected = Expectation(
        3, "client", "X", "t", None, {"type": "X", "a": 2, "b": {"c": 3}}, Difference("a", 2, 1)
    )
    divergence = Divergence("unexpected_message", "fail", arrival, (expected,))
    result = ReplayCase("serve", "s", "replay-1", "diverged", (divergence,), "diverged", 0.5)
    root = ET.fromstring(junit_xml([result]))
    (failure,) = root.iter("failure")
    assert "differs at a: recorded 2, got 1" in (failure.text or "")
    assert "differs at b.c: recorded 3, got 2" in (failure.text or "")


HOSTILE = "ctl \x00\x01\x08\x0b\x0c\x1b end ]]> <x a='1'>&amp; \ud800 \ufffe \uffff \U0001f600"


def test_hostile_recorded_text_stays_well_formed(tmp_path: Path) -> None:
    arrival = Arrival(HOSTILE, HOSTILE, HOSTILE, {"type": HOSTILE, HOSTILE: HOSTILE}, b"\x00]]>")
    expected = Expectation(
        7, "client", HOSTILE, None, None, {"type": HOSTILE, "k": HOSTILE}, Difference("k", 1, 2)
    )
    divergence = Divergence("unexpected_message", "fail", arrival, (expected,))
    result = ReplayCase(
        "serve",
        HOSTILE,
        HOSTILE,
        "diverged",
        (divergence,),
        failure_of("serve", "diverged", (divergence,)),
        1.25,
        ((HOSTILE, HOSTILE),),
    )
    report = tmp_path / "report.xml"
    write_report(report, junit_xml([result, result]))
    root = read_report(report)
    failure = next(root.iter("failure"))
    text = (failure.text or "") + (failure.get("message") or "")
    assert "\\x00" in text and "\\x1b" in text and "\\ud800" in text and "\\ufffe" in text
    assert "]]>" in text and "<x a='1'>&amp;" in text and "\U0001f600" in text
    assert (root.get("tests"), root.get("failures")) == ("2", "2")


def test_a_serve_stopped_before_any_pos_reports_an_error(tmp_path: Path) -> None:
    case = ReplayCase("serve", "s", None, "interrupted", (), "stopped", 0.0)
    root = ET.fromstring(junit_xml([case]))
    assert root.get("errors") == "1" and next(root.iter("error")).get("message") == "stopped"


def test_bad_input_writes_no_report(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    lines = Lines()
    code = run_serve_command(
        config_for(tmp_path / "none"),
        announce=lines.announce,
        complain=lines.err.append,
        junit=report,
    )
    assert code == 2 and not report.exists()


def test_the_report_replaces_the_file_whole(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    report.write_text("old")
    case = ReplayCase("drive", "s", "replay-1", "complete", (), None, 0.1)
    write_report(report, junit_xml([case]))
    assert read_report(report).get("tests") == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["report.xml"]


def test_drive_reports_a_reproduced_run_and_a_diverging_server(
    tmp_path: Path, fixture_stores: FixtureStores
) -> None:
    store = tmp_path / "store"
    session_id = fixture_stores.copy("decline", store)
    passed, failed = tmp_path / "passed.xml", tmp_path / "failed.xml"
    port, stop = run_sim_thread()
    try:
        config = DriveConfig(
            store, session_id, f"ws://127.0.0.1:{port}/", secret="s", pacing=Pacing("asap")
        )
        assert run_drive_command(config, announce=print, complain=print, junit=passed) == 0
        # The simulator's rule cycle moved on: the same execute is approved this time.
        code = run_drive_command(config, announce=print, complain=print, junit=failed)
    finally:
        stop()
    assert code == EXIT_DIVERGED
    root = read_report(passed)
    assert (root.get("tests"), root.get("failures")) == ("1", "0")
    assert next(root.iter("testcase")).get("classname") == "p3log.replay.drive"
    (failure,) = read_report(failed).iter("failure")
    assert (failure.get("message") or "").startswith(
        "diverged: the server sent EXECUTE_TRANSACTION_UPDATE"
    )
    assert "differs at executeTransactionUpdate" in (failure.text or "")
