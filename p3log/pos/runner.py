"""The scripted POS: runs a `Script` through `P3Client`, one result per transaction.

One connection (one session) carries the run. When the link is lost, or a
transaction runs out of time, that transaction's outcome says so and the next one
starts on a fresh connection with a fresh login, as a real POS would.

Outcomes are the final `transaction.status` (`APPROVED`, `DECLINED`, `ABORTED`, …),
`ERROR` when the response carried an error status (`error_type` says which),
`CONNECTION_LOST`, `TIMEOUT`, `VIOLATION` (the server broke the protocol) and
`SKIPPED` (an amend with no previous transaction to refer to).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import trio
from rich.console import Console

from p3log.client import (
    ConnectFailed,
    ConnectionLost,
    NotAbortable,
    P3Client,
    P3ErrorResponse,
    ProtocolViolation,
    RequestRefused,
    RequestTimeout,
    TransactionHandle,
)
from p3log.net.channel import Channel
from p3log.net.recording import RecordingChannel
from p3log.pos.script import Script, ScriptError, Step, load_script
from p3log.projections.opening import open_log
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect, DialectError, load_dialect
from p3log.protocol.model import (
    AmendParameters,
    Device,
    ExecuteTransactionAction,
    ExecuteTransactionUpdate,
    TransactionParameters,
)
from p3log.store.errors import StoreError
from p3log.store.log import EventLog

__all__ = [
    "DEFAULT_SECRET_ENV",
    "DEMO_MERCHANT_SECRET",
    "SIGNATURE_PNG",
    "RunFailed",
    "StepResult",
    "format_result",
    "run_pos",
    "run_script",
]

DEFAULT_SECRET_ENV = "P3LOG_MERCHANT_SECRET"
#: Used when the secret's environment variable is unset. The simulator accepts any
#: secret unless its devices file names one, so this only ever unlocks a simulator.
DEMO_MERCHANT_SECRET = "demo-merchant-secret"
#: A 1x1 PNG: the "shopper's signature" the scripted POS submits.
SIGNATURE_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55"
    "0000000a49444154789c636000000002000148afa4710000000049454e44ae426082"
)
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2


class RunFailed(Exception):
    """The run could not start (connect or login failed); one line."""


@attrs.frozen
class StepResult:
    index: int
    step: Step
    outcome: str
    identifier: str | None
    duration_ms: float
    error_type: str | None = None
    notes: tuple[str, ...] = ()
    session_id: str | None = None

    @property
    def as_expected(self) -> bool | None:
        """None without an expectation; else whether outcome (and error type) matched."""
        if self.step.expect is None:
            return None
        if self.outcome != self.step.expect:
            return False
        return self.step.expect_error is None or self.error_type == self.step.expect_error


@attrs.frozen
class _Outcome:
    outcome: str
    identifier: str | None = None
    error_type: str | None = None
    reconnect: bool = False


class _Attempt:
    """What one step's run leaves behind, whatever way it ends."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.handle: TransactionHandle | None = None

    @property
    def identifier(self) -> str | None:
        """The transaction's identifier, once any message carried it."""
        transaction = self.handle.transaction if self.handle else None
        return transaction.identifier if transaction else None


class _Session:
    """One connection of the run: its client, its device, its session id."""

    def __init__(self, client: P3Client, device: Device, session_id: str) -> None:
        self.client = client
        self.device = device
        self.session_id = session_id


class _Run:
    """One run of a script: its sessions, results and the previous transaction."""

    def __init__(
        self,
        script: Script,
        url: str,
        secret: str,
        dialect: Dialect,
        log: EventLog | None,
        on_result: Callable[[StepResult], None] | None,
    ) -> None:
        self.script = script
        self.url = url
        self.secret = secret
        self.dialect = dialect
        self.log = log
        self.on_result = on_result
        self.results: list[StepResult] = []
        self.previous_identifier: str | None = None
        self._run_id = uuid.uuid4().hex[:8]
        self._connections = 0

    @asynccontextmanager
    async def session(self, device: Device | None = None) -> AsyncIterator[_Session]:
        """A new connection, logged in; on `device`, or the script's choice."""
        self._connections += 1
        session_id = f"pos-{self._run_id}-{self._connections}"
        log = self.log

        def record(channel: Channel) -> Channel:
            assert log is not None
            return RecordingChannel(channel, log, session_id, "client")

        async with P3Client.connect(
            self.url,
            dialect=self.dialect,
            timeout=min(self.script.timeout, 10.0),
            wrap_channel=record if log is not None else None,
        ) as client:
            login = self.script.login
            devices = await client.login(
                login.merchant_identifier, self.secret, login.provider_mode
            )
            chosen = device or _choose_device(self.script, devices)
            yield _Session(client, chosen, session_id)

    def report(self, result: StepResult) -> None:
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)

    def report_lost(self, step: Step, why: Exception) -> None:
        """A step that never ran: no connection (or login) could be had for it."""
        notes = (f"no session: {why}",)
        self.report(
            StepResult(len(self.results) + 1, step, "CONNECTION_LOST", None, 0.0, notes=notes)
        )

    async def run(self) -> list[StepResult]:
        steps = self.script.steps
        index = 0
        while index < len(steps):
            try:
                async with self.session() as current:
                    while index < len(steps):
                        index += 1
                        if await self.run_step(current, steps[index - 1]):
                            break  # this connection is no good any more: a new one
            except (ConnectFailed, P3ErrorResponse, ConnectionLost, RequestTimeout) as exc:
                # Connecting or logging in failed: fatal at the start, else the rest is lost.
                if not self.results:
                    raise RunFailed(f"cannot start a session with {self.url}: {exc}") from exc
                for step in steps[index:]:
                    self.report(
                        StepResult(
                            len(self.results) + 1,
                            step,
                            "CONNECTION_LOST",
                            None,
                            0.0,
                            notes=(str(exc),),
                        )
                    )
                index = len(steps)
        return self.results

    async def run_step(self, session: _Session, step: Step) -> bool:
        """Run one step and report it; True when the connection must be replaced."""
        started = time.monotonic()
        attempt = _Attempt()
        result = await self._outcome(session, step, attempt)
        if step.amend is None:
            self.previous_identifier = result.identifier
        self.report(
            StepResult(
                index=len(self.results) + 1,
                step=step,
                outcome=result.outcome,
                identifier=result.identifier,
                duration_ms=(time.monotonic() - started) * 1000,
                error_type=result.error_type,
                notes=tuple(attempt.notes),
                session_id=session.session_id if self.log is not None else None,
            )
        )
        return result.reconnect

    async def meanwhile(self, step: Step, device: Device) -> None:
        """A second POS runs `step` on `device` (while this one holds it)."""
        try:
            async with self.session(device) as other:
                await self.run_step(other, step)
        except (ConnectFailed, P3ErrorResponse, ConnectionLost, RequestTimeout) as exc:
            self.report(
                StepResult(
                    len(self.results) + 1, step, "CONNECTION_LOST", None, 0.0, notes=(str(exc),)
                )
            )

    async def _outcome(self, session: _Session, step: Step, attempt: _Attempt) -> _Outcome:
        timeout = self.script.timeout
        notes = attempt.notes
        try:
            with trio.fail_after(timeout):
                if step.amend is not None:
                    return await _run_amend(session.client, step, self.previous_identifier, notes)
                return await _run_execute(self, session, step, attempt)
        except trio.TooSlowError:
            notes.append(f"no final response within {timeout:g} s")
            return _Outcome("TIMEOUT", attempt.identifier, reconnect=True)
        except P3ErrorResponse as exc:
            notes.append(str(exc))
            identifier = exc.transaction.identifier if exc.transaction else attempt.identifier
            return _Outcome("ERROR", identifier, exc.error_type)
        except ConnectionLost as exc:
            notes.append(str(exc))
            return _Outcome("CONNECTION_LOST", attempt.identifier, reconnect=True)
        except ProtocolViolation as exc:
            notes.append(str(exc))
            return _Outcome("VIOLATION", attempt.identifier, reconnect=True)


async def run_script(
    script: Script,
    url: str,
    *,
    secret: str,
    dialect: Dialect = DEFAULT_DIALECT,
    log: EventLog | None = None,
    on_result: Callable[[StepResult], None] | None = None,
) -> list[StepResult]:
    """Run every step of `script` against the server at `url`; returns the results.

    With `log`, every connection is recorded into it (one session per connection).
    Raises `RunFailed` if the first connection or login fails.
    """
    return await _Run(script, url, secret, dialect, log, on_result).run()


def _choose_device(script: Script, devices: list[Device]) -> Device:
    choice = script.device
    for device in devices:
        if (
            (choice.resource is None or device.resource == choice.resource)
            and (choice.identifier is None or device.identifier == choice.identifier)
            and (choice.name is None or device.name == choice.name)
        ):
            return device
    offered = ", ".join(f"{d.name} ({d.resource})" for d in devices) or "none"
    raise RunFailed(f"no device matches {choice.describe()} (the server offers: {offered})")


async def _run_amend(
    client: P3Client, step: Step, previous: str | None, notes: list[str]
) -> _Outcome:
    if previous is None:
        notes.append("no previous transaction identifier to amend")
        return _Outcome("SKIPPED")
    params = AmendParameters(
        type=step.amend,
        referenced_transaction_identifier=previous,
        amount=step.amount,
        currency=step.currency if step.amount is not None else None,
    )
    transaction = await client.amend(params)
    return _Outcome(transaction.status or "UNKNOWN", transaction.identifier)


async def _run_execute(run: _Run, session: _Session, step: Step, attempt: _Attempt) -> _Outcome:
    notes = attempt.notes
    params = TransactionParameters(
        amount=step.amount,
        currency=step.currency,
        type=step.type,
        auto_capture=step.auto_capture,
        subject=step.subject,
        custom_identifier=step.custom_identifier,
        tip_adjustable=step.tip_adjustable or None,
    )
    meanwhile = step.meanwhile

    async def decision_due() -> None:
        nonlocal meanwhile
        if meanwhile is not None:
            other, meanwhile = meanwhile, None
            await run.meanwhile(other, session.device)

    async with session.client.execute(session.device, params) as tx:
        attempt.handle = tx
        updates = 0
        aborted = False
        async for event in tx:
            if isinstance(event, ExecuteTransactionUpdate):
                updates += 1
                due = step.abort_after_updates is not None and updates >= step.abort_after_updates
                if due and not aborted and (tx.abortable or step.force_abort):
                    aborted = True
                    await decision_due()
                    await _abort(tx, step.force_abort, notes)
            elif isinstance(event, ExecuteTransactionAction):
                await decision_due()
                await _answer_action(tx, step, event, notes)
        if step.abort_after_updates is not None and not aborted:
            notes.append(f"not abortable after {step.abort_after_updates} updates")
        if meanwhile is not None:
            notes.append("the decision never came due: meanwhile did not run")
        transaction = await tx.result()
    return _Outcome(transaction.status or "UNKNOWN", transaction.identifier)


async def _answer_action(
    tx: TransactionHandle, step: Step, action: ExecuteTransactionAction, notes: list[str]
) -> None:
    if step.abort_during_action:
        await _abort(tx, False, notes)
        return
    if step.sign is None:
        notes.append(f"{action.action} action answered with a PNG signature (no sign decision)")
    for attempt in (1, 2):
        try:
            if step.sign == "on_receipt":
                await tx.submit_signature(on_receipt=True)
            else:
                await tx.submit_signature(SIGNATURE_PNG)
            return
        except P3ErrorResponse as exc:
            notes.append(f"signature attempt {attempt} refused: {exc.error_type}")
    await _abort(tx, False, notes)


async def _abort(tx: TransactionHandle, force: bool, notes: list[str]) -> None:
    try:
        await tx.abort(force=force)
        notes.append("abort accepted")
    except NotAbortable as exc:
        notes.append(f"abort refused by the server: {exc.error_type}")
    except RequestRefused as exc:
        notes.append(f"abort not sent: {exc}")
    except P3ErrorResponse as exc:
        notes.append(f"abort failed: {exc.error_type}")


def format_result(result: StepResult) -> str:
    """One report line: index, amount, decision, outcome, identifier, duration, verdict."""
    step = result.step
    amount = f"{step.amount:.2f} {step.currency}" if step.amount is not None else "full"
    outcome = result.outcome + (f":{result.error_type}" if result.error_type else "")
    verdict = {None: "", True: "ok", False: f"UNEXPECTED (expected {_expected(step)})"}
    parts = [
        f"#{result.index:<3}",
        f"{amount:>13}",
        f"{step.decision:<28}",
        f"{outcome:<32}",
        f"{result.identifier or '-':<32}",
        f"{result.duration_ms:>7.0f} ms",
        verdict[result.as_expected],
    ]
    line = "  ".join(parts).rstrip()
    if result.notes and result.as_expected is False:
        line += "  (" + "; ".join(result.notes) + ")"
    return line


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss", "tcp") or not parts.hostname:
        raise ValueError(f"--url {url!r}: expected ws://HOST:PORT/, wss://… or tcp://HOST:PORT")
    if parts.scheme == "tcp" and parts.port is None:
        raise ValueError(f"--url {url!r}: a tcp:// URL needs a port")


def _expected(step: Step) -> str:
    return (step.expect or "") + (f":{step.expect_error}" if step.expect_error else "")


def run_pos(
    url: str,
    script_path: Path,
    *,
    record: Path | None,
    secret_env: str,
    dialect_path: Path | None,
    out: Console,
    err: Console,
) -> int:
    """`p3log pos`: run a script, print a line per transaction and a summary; the exit code."""
    try:
        _check_url(url)
        script = load_script(script_path)
        dialect = load_dialect(dialect_path)
    except (ScriptError, DialectError, ValueError) as exc:
        err.print(f"p3log: {exc}", highlight=False, markup=False)
        return EXIT_BAD_INPUT
    secret = os.environ.get(secret_env) or DEMO_MERCHANT_SECRET
    log: EventLog | None = None
    started = time.monotonic()
    try:
        if record is not None:
            log = open_log(record, dialect=dialect)

        def show(result: StepResult) -> None:
            out.print(format_result(result), highlight=False, markup=False)

        results = trio.run(
            lambda: run_script(script, url, secret=secret, dialect=dialect, log=log, on_result=show)
        )
    except (RunFailed, StoreError) as exc:
        err.print(f"p3log: {exc}", highlight=False, markup=False)
        return EXIT_UNEXPECTED if isinstance(exc, RunFailed) else EXIT_BAD_INPUT
    finally:
        if log is not None:
            log.close()
    elapsed = time.monotonic() - started
    unexpected = sum(result.as_expected is False for result in results)
    checked = sum(result.as_expected is not None for result in results)
    out.print(
        f"{len(results)} transactions in {elapsed:.2f} s: {checked - unexpected} as expected, "
        f"{unexpected} unexpected, {len(results) - checked} without expectation"
        + (f"; recorded into {record}" if record is not None else ""),
        highlight=False,
    )
    return EXIT_UNEXPECTED if unexpected else 0
