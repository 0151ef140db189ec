#!/usr/bin/env python3
"""A worker that talks to a broker over a Unix socket and beats only after real progress.

This is the failure from the seed report: the broker stays alive but stops answering, so the worker's
process lives on, blocked in recv() forever. A timer inside the worker would keep beating; here each
beat follows a completed turn, so the beats stop when progress stops and `tether run --heartbeat
notify` records the job `lost` / `heartbeat-timeout`.

Usage: BROKER=/path/to/broker.sock tether run --heartbeat notify -- python3 hung_worker.py
Only the standard library: the systemd notify protocol is one datagram to $NOTIFY_SOCKET.
"""
import os
import socket
import sys


def beat(status):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(f"WATCHDOG=1\nSTATUS={status}".encode(), path)
    finally:
        s.close()


def main():
    broker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    broker.connect(os.environ["BROKER"])
    for turn in range(1, 1_000_000):
        broker.sendall(f"turn {turn}\n".encode())
        reply = broker.recv(100)  # blocks forever once the broker stops answering
        if not reply:
            sys.exit("broker closed the connection")
        beat(f"turn {turn} done")
        print(f"turn {turn}: {reply.decode().strip()}", flush=True)


if __name__ == "__main__":
    main()
