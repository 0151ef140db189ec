#!/usr/bin/env python3
"""A broker for the probe example: `http_broker.py PORT healthy` answers every GET with 200 OK;
`http_broker.py PORT hung` accepts every connection and never answers, like a broker whose backend
died while its socket stays open."""
import socket
import sys
import threading

port, mode = int(sys.argv[1]), sys.argv[2]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
held = []


def serve(conn):
    conn.recv(1024)
    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nok\n")
    conn.close()


while True:
    conn, _ = srv.accept()
    if mode == "healthy":
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    else:
        held.append(conn)  # accepted, never answered
