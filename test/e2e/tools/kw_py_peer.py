#!/usr/bin/python3
"""kw_py_peer: a TLS 1.3 peer on Python's ssl module (OpenSSL) with its stock defaults, for
the interop tests of enrolled processes. It holds an X.509-SVID and verifies the other
end's chain against a bundle; an SVID names no host, so the client checks no host name
and prints the peer's SPIFFE ID (its URI SAN) instead.

    kw_py_peer.py server|client HOST PORT CERT KEY CA FILE OUT

One connection: the client sends FILE, half-closes the TCP stream (a FIN, no
close_notify, as a kTLS end does), then writes all it receives to OUT; the server first
reads to the end into OUT, then sends FILE and half-closes. Prints "tls: VERSION SUITE
peer URI", "sent N bytes", "received N bytes"; exits 1 on error.

The one option beside the defaults: the server, which reads to the end and then writes,
takes an end without close_notify as the end (OP_IGNORE_UNEXPECTED_EOF). A kTLS end sends
no close_notify, and OpenSSL 3 by default fails the connection on such an end, writes
included.
"""
import socket
import ssl
import sys

CHUNK = 256 * 1024


def fail(msg):
    print(f"kw_py_peer: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def send_file(conn, path):
    sent = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            conn.sendall(chunk)
            sent += len(chunk)
    # socket.shutdown of the plain socket: SSLSocket.shutdown would drop the TLS state.
    socket.socket.shutdown(conn, socket.SHUT_WR)
    print(f"sent {sent} bytes", flush=True)


def receive_all(conn, path):
    got = 0
    with open(path, "wb") as out:
        # suppress_ragged_eofs (the default): a FIN without close_notify reads as the end.
        while chunk := conn.recv(CHUNK):
            out.write(chunk)
            got += len(chunk)
    print(f"received {got} bytes", flush=True)


def main():
    if len(sys.argv) != 9 or sys.argv[1] not in ("server", "client"):
        fail("usage: kw_py_peer.py server|client HOST PORT CERT KEY CA FILE OUT")
    role, host, port, cert, key, ca, send_path, recv_path = sys.argv[1:]
    server = role == "server"
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False  # an SVID has a SPIFFE ID, no host name; the chain is verified
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if server:
        ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF  # see above
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    try:
        if server:
            with socket.create_server((host, int(port))) as srv:
                print("listening", flush=True)
                raw, _ = srv.accept()
        else:
            raw = socket.create_connection((host, int(port)), timeout=30)
        raw.settimeout(300)
        conn = ctx.wrap_socket(raw, server_side=server)
        peer = [v for k, v in conn.getpeercert().get("subjectAltName", ()) if k == "URI"]
        print(f"tls: {conn.version()} {conn.cipher()[0]} peer {peer[0] if peer else '?'}", flush=True)
        if server:
            receive_all(conn, recv_path)
            send_file(conn, send_path)
        else:
            send_file(conn, send_path)
            receive_all(conn, recv_path)
        conn.close()
    except (OSError, ssl.SSLError) as e:
        fail(f"{role}: {e}")


main()
