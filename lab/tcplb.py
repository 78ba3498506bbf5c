"""A TCP load balancer for the lab's LB hosts (`apiLoadBalancerAddress`): the site's balancer in front of
the API servers, which the program expects and does not deploy. Each connection goes to the first backend
that accepts it, in turn from a rotating start (round robin with failover); bytes are copied both ways
(TLS passes through untouched, client certificates included).

`python3 -m lab.tcplb LISTEN_ADDR PORT BACKEND:PORT...` — run by lab/run.py in the LB host's network
namespace. Standard library only.
"""

from __future__ import annotations

import asyncio
import itertools
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def handler(backends: list[tuple[str, int]]):  # type: ignore[no-untyped-def]
    turn = itertools.count()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        start = next(turn)
        for i in range(len(backends)):
            host, port = backends[(start + i) % len(backends)]
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, port), 3)
            except (TimeoutError, OSError):
                continue
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            return
        writer.close()

    return handle


async def serve(address: str, port: int, backends: list[tuple[str, int]]) -> None:
    server = await asyncio.start_server(handler(backends), address, port)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    address, port, *rest = argv
    backends = [(b.rsplit(":", 1)[0], int(b.rsplit(":", 1)[1])) for b in rest]
    asyncio.run(serve(address, int(port), backends))


if __name__ == "__main__":
    main(sys.argv[1:])
