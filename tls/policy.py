"""What the PKI tooling accepts: names, addresses and lifetimes (each with its reason); anything else is a PKIError."""

from __future__ import annotations

import ipaddress
import re

from .errors import PKIError

# Lifetimes, each with its reason.
# The root: offline, used only to sign or revoke an issuing CA; replacing it means a new trust anchor everywhere.
ROOT_DAYS = MAX_CA_DAYS = 3650
# The issuing CA: its key is on the operator's host for day-to-day work, so two years bounds a stolen key's use
# even if nobody revokes it; `replace-issuing-ca` swaps it (the root revokes the old one).
ISSUING_DAYS = 730
# The broker: the CA/Browser Forum ceiling for public TLS servers since 2026-03-15 (ballot SC-081).
SERVER_DAYS = 200
# Clients: re-issued yearly with `tls rotate`; a key that leaks in between is revoked (TLS-06), not waited out.
CLIENT_DAYS = 365
# The longest leaf accepted: the CA/Browser Forum ceiling of 2020-2026; longer only widens a leaked key's window.
MAX_LEAF_DAYS = 398
MAX_CN_LENGTH = 64  # X.520 upper bound for commonName
RESERVED_NAMES = frozenset({"ca", "issuing-ca", "previous-issuing-ca", "broker", "archive", "crl"})  # file stems / dirs used by the layout

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]+(?<!-)$")
_ROLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


def check_dns_name(name: object) -> str:
    """Return `name` if it is a plain host name (no wildcard, no trailing dot)."""
    if not isinstance(name, str) or not name:
        raise PKIError(f"Host name {name!r} is empty or not a string.")
    labels = name.split(".")
    if len(name) > 253 or any(len(label) > 63 for label in labels):
        raise PKIError(f"Host name {name!r} is too long; each dot-separated part may have at most 63 characters.")
    if not all(_LABEL.match(label) for label in labels):
        raise PKIError(
            f"Host name {name!r} is invalid; use letters, digits, hyphens and dots only "
            "(no spaces, wildcards, or leading/trailing hyphens)."
        )
    if name.rsplit(".", 1)[-1].isdigit():
        # "999.1.1.1" looks like a host name but is a typo'd IP address.
        raise PKIError(f"Host name {name!r} ends in a numeric label; if it is an IP address it does not parse.")
    return name


def check_ip(address: object) -> str:
    """Return the canonical text of an IPv4/IPv6 address."""
    try:
        return str(ipaddress.ip_address(address))  # type: ignore[arg-type]
    except ValueError:
        raise PKIError(f"IP address {address!r} does not parse.") from None


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def check_host(host: object) -> str:
    """A broker host is either a host name or an IP literal; both fit in a commonName."""
    if isinstance(host, str) and is_ip(host):
        return check_ip(host)
    name = check_dns_name(host)
    if len(name) > MAX_CN_LENGTH:
        raise PKIError(f"Host name {name!r} is longer than {MAX_CN_LENGTH} characters, too long for a common name.")
    return name


def check_role(role: object) -> str:
    """Client role names double as file names, so they stay strictly [A-Za-z0-9-]."""
    if not isinstance(role, str) or not role:
        raise PKIError(f"Role name {role!r} is empty or not a string.")
    if len(role) > MAX_CN_LENGTH or not _ROLE.match(role):
        raise PKIError(
            f"Role name {role!r} is invalid; use up to {MAX_CN_LENGTH} letters, digits and hyphens, "
            "not starting with a hyphen."
        )
    return role


def check_client_role(role: object) -> str:
    role = check_role(role)
    if role.lower() in RESERVED_NAMES:
        raise PKIError(f"Role name {role!r} is reserved; choose another name for the client.")
    return role


def check_ca_name(name: object) -> str:
    """A CA name is free text ("Acme CA") but printable, trimmed and short."""
    if not isinstance(name, str) or not name.strip():
        raise PKIError(f"CA common name {name!r} is empty or not a string.")
    if name != name.strip() or not name.isprintable() or "*" in name or len(name) > MAX_CN_LENGTH:
        raise PKIError(
            f"CA common name {name!r} is invalid; use up to {MAX_CN_LENGTH} printable characters "
            "without wildcards or surrounding spaces."
        )
    return name


def check_days(days: object, maximum: int) -> int:
    # bool is an int subclass; True days is never what the caller meant.
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= maximum:
        raise PKIError(f"Validity {days!r} days is invalid; it must be a whole number from 1 to {maximum}.")
    return days


def check_owner(owner: object) -> tuple[int, int] | None:
    if owner is None:
        return None
    if (
        not isinstance(owner, tuple)
        or len(owner) != 2
        or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in owner)
    ):
        raise PKIError(f"Owner {owner!r} is invalid; give it as a (uid, gid) pair of non-negative integers.")
    return owner
