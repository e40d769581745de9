#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that delays every chunk a client sends by a fixed time before
passing it on: in front of a local object store (moto), each request then takes about one
round trip of a remote one (AWS S3 within a region: 10-30 ms), so a benchmark shows what a
store's latency, not its speed on loopback, costs a sequence of requests.

    python3 benches/tools/latency-proxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT DELAY_MS

Prints "ready" once it listens. Standard library only. Answers are passed back at once (the
delay is added once per request, as a round trip would be).
"""

import asyncio
import sys


async def pipe(reader, writer, delay):
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            if delay:
                await asyncio.sleep(delay)
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    listen_port = int(sys.argv[1])
    host, port = sys.argv[2].rsplit(":", 1)
    delay = float(sys.argv[3]) / 1000.0

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, server_writer, delay),
            pipe(server_reader, client_writer, 0),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
