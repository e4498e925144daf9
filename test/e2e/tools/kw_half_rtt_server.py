#!/usr/bin/env python3
"""kw_half_rtt_server: a TLS 1.3 server that speaks first and ends at once (t_mtls_early_close).

    kw_half_rtt_server.py --end shut|close --cert PEM --key PEM --ca PEM PORT LINE

Listens on 127.0.0.1:PORT ("ready" on stdout) and takes one connection. Its whole flight
(ServerHello .. Finished) and one application data record holding "LINE\\n" (half-RTT
data, which TLS 1.3 lets a server send before the client's Finished) leave in one write,
the FIN right after it: the client has the FIN long before it can have checked the flight
and sent its Finished.
OpenSSL writes the flight into a memory BIO; the record is sealed by the kernel: kTLS TX
with the server application traffic secret from OpenSSL's key log, on a loopback TCP
pair of this process whose other end hands the ciphertext back.

--end shut   shutdown(SHUT_WR), then read until the client closes (what it read is not
             checked: the client's Finished and certificate are never verified here)
--end close  close()

Prints "sent N" (bytes of the burst) and exits 0; any failure is an exception (exit 1).
Only TLS_AES_128_GCM_SHA256 is sealed; another negotiated suite is an error.
"""
import argparse
import hashlib
import hmac
import os
import socket
import ssl
import struct
import sys
import tempfile

SOL_TLS = 282
TLS_TX = 1
TCP_ULP = 31
TLS_1_3_VERSION = 0x0304
TLS_CIPHER_AES_GCM_128 = 51


def hkdf_expand_label(secret, label, length):
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def crypto_info_aes_128_gcm(secret):
    key = hkdf_expand_label(secret, b"key", 16)
    iv = hkdf_expand_label(secret, b"iv", 12)
    # struct tls12_crypto_info_aes_gcm_128: version, cipher_type, iv[8], key[16], salt[4], rec_seq[8]
    return struct.pack("=HH", TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128) + iv[4:] + key + iv[:4] + bytes(8)


def seal(secret, plaintext):
    """One TLS 1.3 application data record of PLAINTEXT (record number 0), sealed by kTLS."""
    lsock = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(lsock.getsockname())
    b, _ = lsock.accept()
    a.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
    a.setsockopt(SOL_TLS, TLS_TX, crypto_info_aes_128_gcm(secret))
    a.sendall(plaintext)
    b.settimeout(15)
    record = b""
    while len(record) < 5 or len(record) < 5 + struct.unpack("!H", record[3:5])[0]:
        chunk = b.recv(65536)
        if not chunk:
            raise RuntimeError("the loopback pair closed before the sealed record came back")
        record += chunk
    for s in (a, b, lsock):
        s.close()
    return record


def server_secret(keylog):
    with open(keylog) as f:
        for line in f:
            fields = line.split()
            if len(fields) == 3 and fields[0] == "SERVER_TRAFFIC_SECRET_0":
                return bytes.fromhex(fields[2])
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--end", choices=["shut", "close"], required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("port", type=int)
    p.add_argument("line")
    args = p.parse_args()

    keylog = tempfile.NamedTemporaryFile(prefix="kw-half-rtt-", suffix=".keys", delete=False).name
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.num_tickets = 0
    # Python prefers its own order (AES-256-GCM first): the client's order decides here.
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(args.cert, args.key)
    ctx.load_verify_locations(args.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.keylog_filename = keylog

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", args.port))
    lsock.listen(1)
    print("ready", flush=True)
    conn, _ = lsock.accept()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_side=True)
    conn.settimeout(15)
    secret = None
    while not secret:
        data = conn.recv(65536)
        if not data:
            raise RuntimeError("the client closed before the server's flight")
        incoming.write(data)
        try:
            tls.do_handshake()
            raise RuntimeError("the handshake completed before the client's Finished could have arrived")
        except ssl.SSLWantReadError:
            pass
        secret = server_secret(keylog)
    cipher = tls.cipher()
    if not cipher or cipher[0] != "TLS_AES_128_GCM_SHA256":
        raise RuntimeError(f"negotiated {cipher}, only TLS_AES_128_GCM_SHA256 is sealed here")
    os.unlink(keylog)
    burst = outgoing.read() + seal(secret, args.line.encode() + b"\n")
    conn.sendall(burst)
    if args.end == "shut":
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536):
            pass
    conn.close()
    print(f"sent {len(burst)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
