"""A stand-in for the project's Sentry in the live tests (error_reports = sentry): an HTTPS server on the workers'
egress network that keeps every envelope it is sent and logs every TLS handshake it loses.

It has a CA of its own, not the project's: a Sentry is a service outside the stack. The stack under test is started
with its DSN and CA in the test copy of secrets/ (`write_secrets`, before the workers read them); a receiver with a
CA the workers were not given (one whose `write_secrets` was not used) is an impostor they must refuse to report to.
"""
import json
import secrets
from pathlib import Path

import docker

from tests.harness.readiness import logs, wait_for_log
from tests.harness.scratch import ScratchFiles
from tls.certificates import create_root_ca, issue_server_certificate
from tls.keys import private_key_pem
from tls.pki_directory import cert_pem
from tools import file_access, settings

SERVER_NAME = "errors.test"        # the DSN's host: the receiver's alias on the egress network
PORT = 8443
READY = "receiver ready"
HANDSHAKE_LOST = "handshake refused:"
# Runs in the worker image (its Python, no extra package): one JSON line per envelope, one per lost handshake.
SERVER = r'''
import gzip, http.server, json, ssl, zlib

class Envelopes(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "")
        body = gzip.decompress(body) if encoding == "gzip" else zlib.decompress(body) if encoding == "deflate" else body
        print(json.dumps({"path": self.path, "envelope": body.decode("utf-8", "replace")}), flush=True)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    def get_request(self):
        try:
            return super().get_request()
        except ssl.SSLError as exc:
            print("handshake refused:", exc.reason, flush=True)
            raise

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/receiver/server.crt", "/receiver/server.key")
server = Server(("0.0.0.0", %(port)d), Envelopes)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("receiver ready", flush=True)
server.serve_forever()
'''


class ErrorReportReceiver:
    def __init__(self, stack: settings.StackSettings, issued_by: "ErrorReportReceiver | None" = None,
                 certified_name: str = SERVER_NAME):
        """Its own CA, or `issued_by`'s; a certificate for `certified_name` (whatever name it answers under)."""
        self.stack = stack
        self.scratch = ScratchFiles("error-reports-")
        self.ca_key, self.ca = (issued_by.ca_key, issued_by.ca) if issued_by else create_root_ca("Error reports test CA")
        key, certificate = issue_server_certificate(self.ca_key, self.ca, certified_name, [certified_name], [])
        self.scratch.write("server.crt", cert_pem(certificate).decode(), mode=0o644)
        self.scratch.write("server.key", private_key_pem(key).decode())
        self.scratch.write("serve.py", SERVER % {"port": PORT}, mode=0o644)
        self.container = None

    def write_secrets(self, secrets_dir: Path) -> None:
        """The DSN and CA files the workers mount (in a test copy of secrets/): this receiver, trusted."""
        (secrets_dir / settings.ERROR_REPORTS_DSN).write_text(
            f"https://{secrets.token_hex(16)}@{SERVER_NAME}:{PORT}/1\n")
        (secrets_dir / settings.ERROR_REPORTS_CA).write_text(cert_pem(self.ca).decode())

    def start(self, compose_project: str) -> "ErrorReportReceiver":
        """Run it on the stack's egress network under the DSN's host name, as the workers' uid, read-only (once)."""
        if self.container is not None:
            return self
        file_access.grant_read(self.scratch.path / "server.key", {self.stack.worker_uid})
        client = docker.from_env()
        self.container = client.containers.create(
            self.stack.images.worker, ["python3", "/receiver/serve.py"], user=f"{self.stack.worker_uid}",
            read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges"],
            volumes={str(self.scratch.path / name): {"bind": f"/receiver/{name}", "mode": "ro"}
                     for name in ("serve.py", "server.crt", "server.key")},
            network=f"{compose_project}_egress")
        # Under the DSN's host name: disconnected from the network it was created on, joined again with the alias.
        network = client.networks.get(f"{compose_project}_egress")
        network.disconnect(self.container)
        network.connect(self.container, aliases=[SERVER_NAME])
        self.container.start()
        wait_for_log(self.container, READY, timeout=30)
        return self

    def envelopes(self) -> list[str]:
        """Every envelope received so far, as text (a header line, then item headers and payloads)."""
        return [json.loads(line)["envelope"] for line in logs(self.container).splitlines() if line.startswith("{")]

    def lost_handshakes(self) -> list[str]:
        return [line for line in logs(self.container).splitlines() if line.startswith(HANDSHAKE_LOST)]

    def stop(self) -> None:
        """Remove its container (it may be started again); its files stay until `remove`."""
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except docker.errors.NotFound:
                pass
            self.container = None

    def remove(self) -> None:
        self.stop()
        self.scratch.remove()
