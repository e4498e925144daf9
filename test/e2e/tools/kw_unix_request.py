#!/usr/bin/python3
"""kw_unix_request.py SOCKET [TIMEOUT]: sends stdin (a request line, any bytes; "PID"
replaced by this process's pid) to the unix stream socket SOCKET and prints the first
line that comes back, after how long it took from connect in milliseconds: "MS LINE".
Exits 1 when no line comes within TIMEOUT seconds (default 10)."""
import os
import socket
import sys
import time

path = sys.argv[1]
timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
request = sys.stdin.buffer.read().replace(b"PID", str(os.getpid()).encode())
t0 = time.monotonic()
try:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(request)
        answer = b""
        while b"\n" not in answer:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
except OSError as e:
    sys.exit(f"{path}: no answer: {e}")
took = int((time.monotonic() - t0) * 1000)
if b"\n" not in answer:
    sys.exit(f"{path}: closed after {took} ms without a whole line: {answer[:200]!r}")
sys.stdout.buffer.write(str(took).encode() + b" " + answer.split(b"\n", 1)[0] + b"\n")
