#!/usr/bin/env python3
"""The peer for benches/harness.rs: the PyPI `favicon` library (pip install favicon) over the
harness's fake internet, driven by a thread pool.

Every `*.bench` name resolves to 127.0.0.1 (socket.getaddrinfo is patched; port 80 maps to
--http-port, 443 to --https-port); any other name fails, so nothing leaves loopback. For HTTPS
the harness sets REQUESTS_CA_BUNDLE to its test CA. Prints one JSON line:
{"domains": N, "found": K, "errors": E, "secs": S}, S timed from the first submit to the last
result (interpreter start-up excluded).
"""
import argparse
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import favicon


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True)
    ap.add_argument("--scheme", default="http", choices=["http", "https"])
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("--http-port", type=int, default=80)
    ap.add_argument("--https-port", type=int, default=443)
    ap.add_argument("--timeout", type=float, default=15.0)
    a = ap.parse_args()

    real = socket.getaddrinfo

    def loopback_only(host, port, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if host and host.endswith(".bench"):
            target = a.https_port if int(port or 80) == 443 else a.http_port
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                     ("127.0.0.1", target))]
        if host in ("127.0.0.1", "::1"):
            return real(host, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "the benchmark reaches loopback only")

    socket.getaddrinfo = loopback_only

    with open(a.file) as f:
        domains = [line.strip() for line in f if line.strip()]
    errors = []

    def one(domain):
        try:
            return bool(favicon.get(f"{a.scheme}://{domain}/", timeout=a.timeout))
        except Exception as e:  # noqa: BLE001 - a failure is a result here
            if len(errors) < 5:
                errors.append(repr(e))
            return False

    started = time.monotonic()
    with ThreadPoolExecutor(a.threads) as pool:
        found = sum(pool.map(one, domains))
    secs = time.monotonic() - started
    print(json.dumps({"domains": len(domains), "found": found,
                      "errors": len(domains) - found, "first_errors": errors, "secs": secs}))


if __name__ == "__main__":
    main()
