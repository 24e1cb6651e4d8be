#!/usr/bin/python3
"""The Python websockets peer of the interop tests (Debian's python3-websockets).

    websockets_peer.py version
    websockets_peer.py client PLAN.json
    websockets_peer.py server CERT.pem KEY.pem

client runs the sessions of a plan (see plan_test.go) against the Go test's
server and prints one JSON result per session. server listens on three ports
of 127.0.0.1 (plain, permessage-deflate, TLS), prints {"event": "listening"}
and one {"event": "closed"} per connection, with the paths of ws_server.mjs,
and exits when its standard input closes. The payload generator is the one
of payload_test.go and js/payload.mjs.
"""

import asyncio
import hashlib
import json
import ssl
import sys
import threading
import time
import traceback
from urllib.parse import parse_qs, urlsplit

import websockets

TEXT_UNIT = "duplex é€😀 websocket\n".encode()
PING_DATA = b"duplex-interop-ping"


def payload(kind, size):
    if kind == "binary":
        period = bytes((i * 31 + 7) % 251 for i in range(251))
        return (period * (size // 251 + 1))[:size]
    unit = TEXT_UNIT
    b = bytearray((unit * (size // len(unit) + 2))[: size + 1])
    cut = size
    while cut > 0 and (b[cut] & 0xC0) == 0x80:  # the byte after the cut continues a character
        cut -= 1
    b[cut:] = b"." * (size - cut)
    return bytes(b)


def message(kind, size):
    """The payload as websockets sends it: str for text, bytes for binary."""
    b = payload(kind, size)
    return b.decode() if kind == "text" else b


def pieces(m, n):
    """Splits m into n nearly equal pieces (text at character boundaries)."""
    step = -(-len(m) // n)
    return [m[i * step : (i + 1) * step] for i in range(n)]


def describe(m):
    kind = "text" if isinstance(m, str) else "binary"
    b = m.encode() if kind == "text" else bytes(m)
    r = {"kind": kind, "size": len(b), "hash": hashlib.sha256(b).hexdigest()}
    if kind == "text" and len(b) <= 200:
        r["text"] = m
    return r


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run_step(ws, step):
    op = step["op"]
    if op == "echo":
        m = message(step["kind"], step["size"])
        if step.get("fragments", 1) > 1:
            await ws.send(pieces(m, step["fragments"]))
        else:
            await ws.send(m)
        got = await ws.recv()
        sent = hashlib.sha256(payload(step["kind"], step["size"])).hexdigest()
        return {"op": op, "sent": sent, "got": describe(got)}
    if op == "receive":
        return {"op": op, "got": describe(await ws.recv())}
    if op == "ping":
        waiter = await ws.ping(PING_DATA)
        await waiter
        return {"op": op, "ok": True}
    if op == "close":
        await ws.close(step["code"], step["reason"])
        return {"op": op, "code": ws.close_code, "reason": ws.close_reason}
    if op == "awaitClose":
        await ws.wait_closed()
        return {"op": op, "code": ws.close_code, "reason": ws.close_reason}
    raise ValueError("unknown step " + op)


async def run_session(s, ca):
    start = time.monotonic()
    res = {"name": s["name"], "protocol": "", "extensions": "", "steps": []}
    ctx = ssl.create_default_context(cafile=ca) if s["url"].startswith("wss:") else None
    try:
        async with websockets.connect(
            s["url"],
            subprotocols=s["protocols"] or None,
            compression="deflate" if s["compress"] else None,
            max_size=None,
            ssl=ctx,
            ping_interval=None,
            open_timeout=10,
            close_timeout=5,
        ) as ws:
            res["protocol"] = ws.subprotocol or ""
            res["extensions"] = ws.response_headers.get("Sec-WebSocket-Extensions", "")
            for step in s["steps"]:
                r = await asyncio.wait_for(run_step(ws, step), s["stepTimeoutMs"] / 1000)
                res["steps"].append(r)
    except Exception:
        res["error"] = traceback.format_exc()
    res["ms"] = round((time.monotonic() - start) * 1000)
    return res


async def client(plan_path):
    with open(plan_path) as f:
        plan = json.load(f)
    for s in plan["sessions"]:
        emit(await run_session(s, plan.get("ca")))


async def handle(ws, path):
    u = urlsplit(path)
    conn_id = parse_qs(u.query).get("id", [""])[0]
    try:
        if u.path == "/close":
            await ws.close(4001, "bye")
            return
        if u.path == "/ping":
            n = 0
            for n in range(1, 4):
                waiter = await ws.ping(PING_DATA)
                await asyncio.wait_for(waiter, 10)
            await ws.send("pings answered: %d" % n)
        elif u.path == "/fragments":
            for kind in ("text", "binary"):
                await ws.send(pieces(message(kind, 10000), 5))
        async for m in ws:
            await ws.send(m)
    except websockets.ConnectionClosed:
        pass
    finally:
        await ws.wait_closed()
        emit({"event": "closed", "id": conn_id, "code": ws.close_code, "reason": ws.close_reason})


async def server(cert, key):
    common = dict(subprotocols=["duplex.test"], max_size=None, ping_interval=None, close_timeout=5)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    plain = await websockets.serve(handle, "127.0.0.1", 0, compression=None, **common)
    deflate = await websockets.serve(handle, "127.0.0.1", 0, compression="deflate", **common)
    secure = await websockets.serve(handle, "127.0.0.1", 0, compression=None, ssl=tls, **common)
    port = lambda s: s.sockets[0].getsockname()[1]
    emit({"event": "listening", "ports": {"plain": port(plain), "deflate": port(deflate), "tls": port(secure)}})
    stdin_closed = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()

    def wait_stdin():
        sys.stdin.read()
        loop.call_soon_threadsafe(stdin_closed.set_result, None)

    threading.Thread(target=wait_stdin, daemon=True).start()
    await stdin_closed


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "version":
        print(websockets.__version__)
    elif cmd == "client":
        asyncio.run(client(sys.argv[2]))
    elif cmd == "server":
        asyncio.run(server(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
