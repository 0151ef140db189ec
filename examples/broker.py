#!/usr/bin/env python3
"""A broker that answers ANSWER turns (default 3), then keeps the connection open and goes silent,
like a broker whose backend died. Usage: python3 broker.py /path/to/broker.sock [ANSWER]"""
import os
import socket
import sys

path = sys.argv[1]
answer = int(sys.argv[2]) if len(sys.argv) > 2 else 3
if os.path.exists(path):
    os.unlink(path)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
conn, _ = srv.accept()
for _ in range(answer):
    conn.recv(100)
    conn.sendall(b"ok\n")
conn.recv(100)  # the next turn arrives and is never answered
while True:
    conn.recv(100) or sys.exit(0)
