#!/usr/bin/env python3
"""A tiny HTTP(S) server that answers from a script, for the client specs that need a
reply no real API server sends (truncated JSON, HTML, a wrong content type, a broken
watch line) or that must see exactly what the client sent (headers, connections).

  script-server.py SCRIPT.json LOG.jsonl [--tls CERT KEY [--client-ca CA]]

Prints the port it listens on (127.0.0.1, chosen by the kernel) on stdout, then serves.
SCRIPT: {"routes": [{"path": "/x", "method": "GET", "replies": [REPLY, ...]}]}; a
route's replies are used in turn, the last one repeats. The path matches the request
path without its query; "prefix": true matches by prefix. REPLY: {"status": 200,
"headers": {"Content-Type": "..."}, "body": "...", "lines": ["...", ...] (a chunked
stream, one write per line, "delay" seconds between), "gzip": true (compress the body,
Content-Encoding: gzip), "close": true (drop the
connection after the body), "length": N (announce N bytes whatever the body)}.
Every request is appended to LOG as one JSON line: method, path, headers, body, peer port.
"""
import gzip
import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

script_path, log_path = sys.argv[1], sys.argv[2]
lock = threading.Lock()
counters = {}


def load_script():
    with open(script_path) as f:
        return json.load(f)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace") if n else ""
        path = self.path.split("?", 1)[0]
        with lock:
            with open(log_path, "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path,
                                    "headers": dict(self.headers.items()), "body": body,
                                    "port": self.client_address[1]}) + "\n")
            route = None
            script = load_script()
            gen = script.get("gen", 0)  # a new script starts its replies from the first
            for i, r in enumerate(script["routes"]):
                if r.get("method", self.command) != self.command:
                    continue
                if path == r["path"] or (r.get("prefix") and path.startswith(r["path"])):
                    route = (i, r)
                    break
            if route is None:
                reply = {"status": 404, "headers": {"Content-Type": "application/json"},
                         "body": json.dumps({"kind": "Status", "apiVersion": "v1",
                                             "status": "Failure", "reason": "NotFound",
                                             "message": "no route for " + path, "code": 404})}
            else:
                i, r = route
                k = counters.get((gen, i), 0)
                counters[(gen, i)] = k + 1
                replies = r["replies"]
                reply = replies[min(k, len(replies) - 1)]
        self.send_response_only(reply.get("status", 200))
        for k, v in reply.get("headers", {}).items():
            self.send_header(k, v)
        if "lines" in reply:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for line in reply["lines"]:
                data = line.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                time.sleep(reply.get("delay", 0))
            if reply.get("close"):
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(b"0\r\n\r\n")
            return
        data = reply.get("body", "").encode()
        if reply.get("gzip"):
            data = gzip.compress(data)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(reply.get("length", len(data))))
        if reply.get("close"):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        if reply.get("close"):
            self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
if "--tls" in sys.argv:
    i = sys.argv.index("--tls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[i + 1], sys.argv[i + 2])
    if "--client-ca" in sys.argv:
        ctx.load_verify_locations(sys.argv[sys.argv.index("--client-ca") + 1])
        ctx.verify_mode = ssl.CERT_REQUIRED
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
