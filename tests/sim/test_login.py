"""Login: the three required fields, the configured devices, the configured secret."""

from __future__ import annotations

import pytest

from p3log.protocol import Device, LoginMerchantResponse, MessageType
from p3log.sim import DevicesConfig, SimConfig, SimDevice
from tests.sim.peer import USB, WIFI, Peer, execute_request, login_request


async def test_login_returns_the_configured_devices(start_sim):
    url = await start_sim()
    async with Peer.connect(url, login=False) as peer:
        (response,) = await peer.request(login_request("login-1"))
    assert response.type == MessageType.LOGIN_MERCHANT_RESPONSE
    assert response.tag == "login-1"
    assert response.status == "OK"
    assert isinstance(response.body, LoginMerchantResponse)
    assert response.body.devices == [
        Device(name="USB reader", identifier="usbReader", resource=USB, type="MOCK", comlink="USB"),
        Device(
            name="WiFi reader", identifier="wifiReader", resource=WIFI, type="MOCK", comlink="WIFI"
        ),
    ]


@pytest.mark.parametrize(
    ("missing", "wire_name"),
    [("mode", "providerMode"), ("merchant", "merchantIdentifier"), ("secret", "merchantSecret")],
)
async def test_a_missing_login_field_is_parameter_missing(start_sim, missing, wire_name):
    url = await start_sim()
    async with Peer.connect(url, login=False) as peer:
        (response,) = await peer.request(login_request("login-1", **{missing: None}))
    assert response.type == MessageType.LOGIN_MERCHANT_RESPONSE
    assert response.tag == "login-1"
    assert response.is_error
    assert response.error is not None
    assert response.error.type == "PARAMETER_MISSING"
    assert wire_name in (response.error.message or "")


async def test_a_wrong_secret_fails_authentication(start_sim):
    devices = DevicesConfig(merchant_identifier="shop", merchant_secret="right")
    url = await start_sim(SimConfig(devices=devices, time_scale=0))
    async with Peer.connect(url, login=False) as peer:
        (wrong,) = await peer.request(login_request("login-1", secret="guess-1234"))
        (right,) = await peer.request(login_request("login-2", secret="right"))
    assert wrong.is_error
    assert wrong.error is not None and wrong.error.type == "SERVER_AUTHENTICATION_FAILED"
    assert "guess-1234" not in (wrong.error.message or "")  # the secret is never echoed
    assert right.status == "OK"


async def test_devices_come_from_the_config(start_sim):
    devices = DevicesConfig(devices=(SimDevice(identifier="c1", type="MIURA", comlink="WIFI"),))
    url = await start_sim(SimConfig(devices=devices, time_scale=0))
    async with Peer.connect(url, login=False) as peer:
        (response,) = await peer.request(login_request("login-1"))
        (unknown,) = await peer.request(execute_request("t-1", USB))
    assert isinstance(response.body, LoginMerchantResponse)
    assert [d.resource for d in response.body.devices or []] == ["devices/c1"]
    assert unknown.error is not None and unknown.error.type == "ACCESSORY_NOT_FOUND"


async def test_requests_before_login_are_refused(start_sim):
    url = await start_sim()
    async with Peer.connect(url, login=False) as peer:
        (response,) = await peer.request(execute_request("t-1"))
        (login,) = await peer.request(login_request("login-1"))
        after = await peer.transact("t-2")
    assert response.type == MessageType.EXECUTE_TRANSACTION_RESPONSE
    assert response.tag == "t-1"
    assert response.error is not None and response.error.type == "SERVER_AUTHENTICATION_FAILED"
    assert login.status == "OK"
    assert after[-1].status == "OK"
