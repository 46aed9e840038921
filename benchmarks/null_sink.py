"""A minimal Amberflo-shaped sink for measuring the connector without the emulator's cost.

``python -m benchmarks.null_sink PORT`` answers ``POST /ingest`` (gunzip, parse, count the
events, 200 "N records were ingested"), ``GET /customers`` (``{}``, the connector's startup
probe) and ``GET /_emulator/stats`` (``{"records_stored": N}``).  Nothing is stored or
deduplicated: it only shows how fast the connector itself can go on this machine.
"""

from __future__ import annotations

import asyncio
import sys
import zlib

import orjson

_count = 0


def _response(status: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nContent-Type: text/plain\r\n\r\n"
    ).encode() + body


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global _count
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if method == "POST" and path.startswith("/ingest"):
                if headers.get("content-encoding") == "gzip":
                    body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
                doc = orjson.loads(body)
                n = len(doc) if isinstance(doc, list) else 1
                _count += n
                writer.write(_response("200 OK", f"{n} records were ingested".encode()))
            elif path.startswith("/_emulator/stats"):
                writer.write(_response("200 OK", orjson.dumps({"records_stored": _count})))
            else:
                writer.write(_response("200 OK", b"{}"))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1])))
