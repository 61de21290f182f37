"""The broker's health follows the connection: down while RabbitMQ is unreachable, up again
after aio-pika's robust connection has reconnected by itself."""

from __future__ import annotations

import httpx

from shared.broker import Broker
from tests import support
from tests.faults.proxy import TcpProxy


class TestIsConnected:
    async def test_a_lost_connection_is_not_connected_until_it_is_back(self) -> None:
        amqp = httpx.URL(support.AMQP_URL)
        async with TcpProxy(str(amqp.host), int(amqp.port or 5672)) as proxy:
            url = support.AMQP_URL.replace(
                f"{amqp.host}:{amqp.port or 5672}", f"127.0.0.1:{proxy.port}"
            )
            broker = Broker(url, prefix=support.unique_prefix(), client_name="tests")
            await broker.connect()
            try:
                assert broker.is_connected
                proxy.refusing = True
                proxy.drop_all()

                async def down() -> bool:
                    return not broker.is_connected

                await support.eventually(down, timeout=10)
                proxy.refusing = False

                async def up() -> bool:
                    return broker.is_connected

                await support.eventually(up, timeout=30)
            finally:
                await support.delete_events_exchange(broker)
                await broker.close()
