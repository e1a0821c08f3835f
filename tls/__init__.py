"""Project PKI: a private CA plus broker and client certificates for mutual TLS."""

from .certificates import (
    create_ca,
    describe,
    issue_client_certificate,
    issue_server_certificate,
    load_certificate,
    server_alt_names,
    verify_chain,
)
from .errors import ChownRequired, PKIError
from .keys import load_private_key
from .revocation import openssl_name_hash
from .pki_directory import add_client, add_server, bootstrap_pki, check_crl, check_pki, revoke, rotate, write_crl

__all__ = [
    "ChownRequired",
    "PKIError",
    "add_client",
    "add_server",
    "bootstrap_pki",
    "check_crl",
    "check_pki",
    "create_ca",
    "describe",
    "issue_client_certificate",
    "issue_server_certificate",
    "load_certificate",
    "load_private_key",
    "openssl_name_hash",
    "revoke",
    "rotate",
    "server_alt_names",
    "verify_chain",
    "write_crl",
]
