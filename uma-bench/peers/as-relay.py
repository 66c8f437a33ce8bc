#!/usr/bin/env python3
"""A counting TCP relay in front of the authorization server (run-peers.sh).

    as-relay.py --target 127.0.0.1:8280 --log FILE

Listens on 127.0.0.1 (a free port), prints `listening on http://127.0.0.1:PORT` once it
accepts connections, and passes every byte through to --target unchanged, the `Host` header
included (so Keycloak derives its issuer from the relay's address, and every URL it hands out
points back at the relay). It parses the client-to-AS direction as HTTP/1.1 requests (heads,
then `Content-Length` bodies) and appends one line per request to --log:
`METHOD PATH` (the query left out). A request body it cannot frame (chunked) ends the
parsing of that connection, which is then relayed blind and logged as `UNPARSED`.

Only the standard library; the AS calls of a benchmark are few, so the relay's speed does not
matter, but it runs on the load generator's core (taskset by the caller).
"""

import argparse
import asyncio
import signal
import sys


class Counter:
    def __init__(self, path):
        self.out = open(path, "a", buffering=1)

    def request(self, method, target):
        self.out.write(f"{method} {target.split('?', 1)[0]}\n")


def close(writer):
    try:
        writer.close()
    except Exception:
        pass


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        close(writer)


async def requests(reader, writer, counter):
    """Client to AS: forwards everything, logging each request line it frames."""
    buf = b""
    framing = True
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
            if not framing:
                continue
            buf += data
            while framing:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buf[:end].decode("latin-1").split("\r\n")
                parts = head[0].split(" ")
                length = 0
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value.strip())
                    elif name == "transfer-encoding":
                        framing = False
                if len(parts) >= 2:
                    counter.request(parts[0], parts[1])
                if not framing:
                    counter.request("UNPARSED", "-")
                    buf = b""
                    break
                if len(buf) < end + 4 + length:
                    # The rest of the body arrives later: wait for it.
                    need = end + 4 + length - len(buf)
                    while need > 0:
                        more = await reader.read(min(need, 65536))
                        if not more:
                            return
                        writer.write(more)
                        await writer.drain()
                        need -= len(more)
                    buf = b""
                else:
                    buf = buf[end + 4 + length :]
    except (ConnectionError, asyncio.CancelledError, ValueError):
        pass
    finally:
        close(writer)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    host, port = args.target.rsplit(":", 1)
    counter = Counter(args.log)

    async def serve(client_r, client_w):
        try:
            as_r, as_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(requests(client_r, as_w, counter), pipe(as_r, client_w))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    addr = server.sockets[0].getsockname()
    print(f"listening on http://{addr[0]}:{addr[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    # A background job of a script starts with SIGINT ignored: stop on SIGINT (what
    # uma-bench/lib.sh sends) and SIGTERM explicitly.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(0))
    asyncio.run(main())
