"""A tiny raw P3 peer for driving the simulator: model messages out, `parse` in.

It deliberately does not use `p3log.client`: the simulator's tests must not depend
on the library they will be used to test.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import trio

from p3log.net.channel import Channel, open_channel
from p3log.protocol import (
    DEFAULT_DIALECT,
    AbortTransactionRequest,
    AmendParameters,
    AmendTransactionRequest,
    Dialect,
    ExecuteTransactionRequest,
    LoginMerchantRequest,
    Malformed,
    Message,
    MessageType,
    SubmitSignatureRequest,
    TransactionParameters,
    parse,
    serialize,
)

TIMEOUT = 10.0
USB = "devices/usbReader"
WIFI = "devices/wifiReader"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()


class Peer:
    def __init__(self, channel: Channel, dialect: Dialect = DEFAULT_DIALECT) -> None:
        self.channel = channel
        self.dialect = dialect
        self.raw: list[bytes] = []  # every message received, as it arrived
        self._tags = 0

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, url: str, *, login: bool = True, dialect: Dialect = DEFAULT_DIALECT
    ) -> AsyncIterator[Peer]:
        async with open_channel(url, dialect) as channel:
            peer = cls(channel, dialect)
            if login:
                response = await peer.request(login_request(peer.tag("login")))
                assert not response[-1].is_error, response[-1]
            yield peer

    def tag(self, prefix: str = "t") -> str:
        self._tags += 1
        return f"{prefix}-{self._tags}"

    async def send(self, message: Message) -> None:
        await self.channel.send(serialize(message, self.dialect))

    async def send_bytes(self, data: bytes) -> None:
        await self.channel.send(data)

    async def receive(self) -> Message:
        with trio.fail_after(TIMEOUT):
            data = await self.channel.receive()
        self.raw.append(data)
        message = parse(data, self.dialect)
        assert not isinstance(message, Malformed), (message, data)
        return message

    async def request(self, message: Message) -> list[Message]:
        """Send a request; every message until its response (the response last)."""
        await self.send(message)
        return await self.until_response(message.tag)

    async def until_response(self, tag: str | None) -> list[Message]:
        seen = []
        while True:
            message = await self.receive()
            seen.append(message)
            if message.tag == tag and message.type.endswith("_RESPONSE"):
                return seen

    async def until_responses(self, *tags: str) -> list[Message]:
        """Every message until each of `tags` has had its response, in any order."""
        seen = []
        waiting = set(tags)
        while waiting:
            message = await self.receive()
            seen.append(message)
            if message.type.endswith("_RESPONSE"):
                waiting.discard(message.tag)
        return seen

    async def until(self, tag: str, predicate: Any) -> list[Message]:
        """Messages for `tag` up to and including the first that satisfies `predicate`."""
        seen = []
        while True:
            message = await self.receive()
            assert message.tag == tag, message
            seen.append(message)
            if predicate(message):
                return seen

    async def transact(
        self, tag: str, resource: str = USB, amount: str = "10.00", **params: Any
    ) -> list[Message]:
        """An execute to its final response, answering any action with sign-on-receipt."""
        await self.send(execute_request(tag, resource, amount, **params))
        seen = []
        while True:
            message = await self.receive()
            seen.append(message)
            if message.type == MessageType.EXECUTE_TRANSACTION_ACTION:
                answer = await self.request(signature_request(self.tag("sig"), on_receipt=True))
                seen.extend(answer)
            elif message.tag == tag and message.type.endswith("_RESPONSE"):
                return seen


def login_request(
    tag: str, *, mode: str | None = "MOCK", merchant: str | None = "shop", secret: str | None = "s"
) -> Message:
    body = LoginMerchantRequest(
        provider_mode=mode, merchant_identifier=merchant, merchant_secret=secret
    )
    return Message(type=MessageType.LOGIN_MERCHANT_REQUEST, tag=tag, body=body)


def execute_request(
    tag: str, resource: str | None = USB, amount: str | None = "10.00", **params: Any
) -> Message:
    values: dict[str, Any] = {"currency": "EUR", "type": "CHARGE", "auto_capture": True}
    values.update(params)
    parameters = TransactionParameters(amount=None if amount is None else Decimal(amount), **values)
    body = ExecuteTransactionRequest(transaction_parameters=parameters)
    return Message(
        type=MessageType.EXECUTE_TRANSACTION_REQUEST, tag=tag, resource=resource, body=body
    )


def abort_request(
    tag: str, resource: str | None = USB, msg_type: str = MessageType.ABORT_TRANSACTION_REQUEST
) -> Message:
    return Message(
        type=msg_type,
        tag=tag,
        resource=resource,
        body=AbortTransactionRequest(),
    )


def signature_request(
    tag: str, *, resource: str | None = USB, png: str | None = None, on_receipt: bool | None = None
) -> Message:
    body = SubmitSignatureRequest(signature=png, sign_on_receipt=on_receipt)
    return Message(type=MessageType.SUBMIT_SIGNATURE_REQUEST, tag=tag, resource=resource, body=body)


def amend_request(tag: str, kind: str, reference: str, amount: str | None = None) -> Message:
    params = AmendParameters(
        type=kind,
        referenced_transaction_identifier=reference,
        amount=None if amount is None else Decimal(amount),
    )
    return Message(
        type=MessageType.AMEND_TRANSACTION_REQUEST,
        tag=tag,
        body=AmendTransactionRequest(transaction_parameters=params),
        null_keys=frozenset({"resource"}),
    )


def updates(messages: list[Message]) -> list[Any]:
    """The bodies of the execute/amend updates among `messages`."""
    return [m.body for m in messages if m.type.endswith("_TRANSACTION_UPDATE")]


def states(messages: list[Message]) -> list[str]:
    return [body.state for body in updates(messages)]
