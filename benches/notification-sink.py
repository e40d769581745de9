#!/usr/bin/env python3
"""A minimal HTTP endpoint for notification benchmarks: answers 200 to every request, counts
the requests and bytes it received, and prints the counts when stopped (SIGTERM or SIGINT).

    python3 benches/notification-sink.py 127.0.0.1:5199

asyncio, keep-alive, standard library only; it parses just enough HTTP/1.1 (Content-Length
bodies) for the registry's notifier.
"""

import asyncio
import signal
import sys

received = {"requests": 0, "bytes": 0}


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            received["requests"] += 1
            received["bytes"] += len(body)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(addr):
    host, port = addr.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print(f"sink: {received['requests']} requests, {received['bytes']} bytes", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:5199"))
