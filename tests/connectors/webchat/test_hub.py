"""Delivery across gateway processes: two hubs on separate brokers meet through a real Redis."""

import asyncio
import socket
import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from common.broker import InProcessBroker, RedisBroker, make_broker
from common.channels import Reply
from connectors.webchat.channel import WebchatSender
from connectors.webchat.hub import Connection, Hub
from connectors.webchat.tokens import InvalidToken, VisitorTokens

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingSocket:
    """Stands in for a browser's socket: records what the hub sends."""

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.arrived = asyncio.Event()

    async def send_json(self, data: Any, mode: str = "text") -> None:
        self.frames.append(data)
        self.arrived.set()


class DeadSocket:
    async def send_json(self, data: Any, mode: str = "text") -> None:
        raise ConnectionResetError("gone")


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.anyio
@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
async def test_a_push_from_one_process_reaches_the_socket_held_by_another() -> None:
    one, two = RedisBroker(REDIS_URL), RedisBroker(REDIS_URL)
    hub_one, hub_two = Hub(one), Hub(two)
    for broker, hub in ((one, hub_one), (two, hub_two)):
        await broker.start()
        await hub.start()
        assert await broker.ready()
    try:
        visitor = f"wv_{uuid.uuid4().hex[:22]}"
        held = RecordingSocket()
        hub_two.add(Connection(held, visitor))
        bystander = RecordingSocket()
        hub_one.add(Connection(bystander, "wv_someone_else_entirely"))
        await WebchatSender(hub_one).send(visitor, [Reply(kind="agent", text="您好", message_id=41)])
        await asyncio.wait_for(held.arrived.wait(), 5)
        [frame] = held.frames
        assert frame["type"] == "message"
        assert (frame["message"]["text"], frame["message"]["sender"], frame["message"]["message_id"]) == (
            "您好",
            "agent",
            41,
        )
        assert bystander.frames == []
    finally:
        await one.close()
        await two.close()


@pytest.mark.anyio
@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
async def test_a_long_poll_wakes_on_a_push_from_another_process() -> None:
    one, two = RedisBroker(REDIS_URL), RedisBroker(REDIS_URL)
    hub_one, hub_two = Hub(one), Hub(two)
    for broker, hub in ((one, hub_one), (two, hub_two)):
        await broker.start()
        await hub.start()
        assert await broker.ready()
    try:
        visitor = f"wv_{uuid.uuid4().hex[:22]}"
        waiting = asyncio.create_task(hub_two.wait(visitor, 5))
        await asyncio.sleep(0.05)
        await hub_one.publish(visitor, [{"type": "message"}])
        assert await waiting is True
        assert await hub_two.wait(visitor, 0.1) is False
    finally:
        await one.close()
        await two.close()


@pytest.mark.anyio
async def test_the_in_process_broker_delivers_only_to_the_visitor_and_survives_dead_sockets() -> None:
    broker = make_broker(None)
    assert isinstance(broker, InProcessBroker)
    hub = Hub(broker)
    await hub.start()
    alive, dead = RecordingSocket(), Connection(DeadSocket(), "wv_a")
    hub.add(dead)
    hub.add(Connection(alive, "wv_a"))
    hub.add(Connection(RecordingSocket(), "wv_b"))
    assert hub.connections == 3
    await hub.publish("wv_a", [{"type": "message", "n": 1}])
    await asyncio.wait_for(alive.arrived.wait(), 2)
    assert alive.frames == [{"type": "message", "n": 1}]
    # The dead socket may be tried after the live one: give the send task a moment.
    for _ in range(100):
        if not dead.open:
            break
        await asyncio.sleep(0.01)
    assert dead.open is False
    hub.remove(dead)
    assert hub.connections == 2


def test_visitor_tokens_verify_only_their_own_signature() -> None:
    tokens = VisitorTokens(SecretStr("one secret of the deployment 0123"))
    other = VisitorTokens(SecretStr("another deployment's secret 98765"))
    visitor, token = tokens.issue()
    assert tokens.verify(token) == visitor
    assert tokens.sign(visitor) == token
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (other.sign(visitor), altered, "", None, 42, "v1..", token + "."):
        with pytest.raises(InvalidToken):
            tokens.verify(bad)
