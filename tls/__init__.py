"""Project PKI: an offline root, an issuing CA, and broker and client certificates for mutual TLS."""

from .certificates import (
    create_issuing_ca,
    create_root_ca,
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
from .pki_directory import (add_client, add_local_server, add_server, bootstrap_pki, check_crl, check_pki, issuer_of, load_ca,
                            load_root, replace_issuing_ca, revoke, rotate, rotate_issuing_ca, write_client_pair,
                            write_crl)

__all__ = [
    "ChownRequired",
    "PKIError",
    "add_client",
    "add_local_server",
    "add_server",
    "bootstrap_pki",
    "check_crl",
    "check_pki",
    "create_issuing_ca",
    "create_root_ca",
    "describe",
    "issue_client_certificate",
    "issue_server_certificate",
    "issuer_of",
    "load_ca",
    "load_certificate",
    "load_private_key",
    "load_root",
    "openssl_name_hash",
    "replace_issuing_ca",
    "revoke",
    "rotate",
    "rotate_issuing_ca",
    "server_alt_names",
    "verify_chain",
    "write_client_pair",
    "write_crl",
]
