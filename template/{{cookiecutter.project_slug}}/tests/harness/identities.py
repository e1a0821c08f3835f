"""Broker identities a test stages beyond the shipped ones (a retired user, say), logging in the way the stack is
baked: with its own project-CA certificate and, with password login, a random password."""
import dataclasses
import secrets
from pathlib import Path

from tls import write_client_pair
from tools.broker_client import Endpoint
from tools.credentials import HASHING_ALGORITHM, rabbitmq_password_hash


@dataclasses.dataclass(frozen=True)
class StagedIdentity:
    name: str
    password: str | None          # None with certificate login: the certificate is the whole credential
    endpoint: Endpoint            # the stack's endpoint, presenting certificates from the identity's own directory

    def definition(self, **extra) -> dict:
        """Its entry in a definitions file's users, as tools.credentials writes shipped users."""
        password_hash = "" if self.password is None else rabbitmq_password_hash(self.password)
        return {"name": self.name, "password_hash": password_hash, "hashing_algorithm": HASHING_ALGORITHM,
                "tags": [], **extra}

    def connect(self, vhost: str):
        """Log in as this identity (its certificate; its password too with password login)."""
        return self.endpoint.connect(vhost, "producer", user=self.name, password=self.password)


def stage_identity(endpoint: Endpoint, name: str, pki_dir: Path) -> StagedIdentity:
    """A certificate for `name` issued by the project's issuing CA into `pki_dir` (never the project's pki/), and a password
    when the stack logs in with passwords."""
    write_client_pair(endpoint.project_dir / "pki", name, pki_dir)
    password = secrets.token_urlsafe(24) if endpoint.stack.passwords else None
    return StagedIdentity(name, password, dataclasses.replace(endpoint, pki_dir=pki_dir))
