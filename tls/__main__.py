"""Command line: `python -m tls {init,issue-client,issue-server,rotate,revoke,crl,inspect,rotate-issuing-ca,
replace-issuing-ca}`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import PKIError
from .metrics import exposition
from .pki_directory import (DEFAULT_CA_NAME, DEFAULT_DIR, add_client, add_server, bootstrap_pki, check_crl, check_pki,
                            leaf_names, load_root, rebuild_crl, replace_issuing_ca, revoke, root_key_on_host, rotate,
                            rotate_issuing_ca, under_previous)
from .policy import CLIENT_DAYS, SERVER_DAYS

EXIT_OK, EXIT_WARN, EXIT_USAGE = 0, 1, 2


def parse_owner(text: str) -> tuple[int, int]:
    uid, sep, gid = text.partition(":")
    if not (sep and uid.isdigit() and gid.isdigit()):
        raise PKIError(f"Owner {text!r} is invalid; write it as UID:GID, e.g. 999:999.")
    return int(uid), int(gid)


def parse_named_owner(text: str) -> tuple[str, tuple[int, int]]:
    name, sep, owner = text.partition("=")
    if not (sep and name):
        raise PKIError(f"Owner {text!r} is invalid; write it as NAME=UID:GID, e.g. broker=999:999.")
    return name, parse_owner(owner)


def build_parser() -> argparse.ArgumentParser:
    # --dir is accepted before or after the sub-command; SUPPRESS keeps the sub-parser from resetting it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help="PKI directory (default: pki)")
    parser = argparse.ArgumentParser(prog="python -m tls", description="Manage the project's TLS certificates.")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="PKI directory (default: pki)")
    sub = parser.add_subparsers(dest="command", required=True)

    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("--root-dir", type=Path, metavar="DIR",
                      help="the offline root's directory: its key, and a passphrase file or a prompt (default: pki-root)")

    p = sub.add_parser("init", parents=[common, root],
                       help="create the root, the issuing CA, the broker and client certificates")
    p.add_argument("--broker-host", required=True, metavar="HOST")
    p.add_argument("--client", action="append", required=True, metavar="ROLE", dest="clients")
    p.add_argument("--server", action="append", default=[], metavar="HOST", dest="servers",
                   help="another TLS service of the project (e.g. the result store): a certificate for HOST, which "
                        "the issuing CA's name constraints permit too")
    p.add_argument("--owner", action="append", default=[], metavar="NAME=UID:GID", dest="owners")
    p.add_argument("--ca-name", default=DEFAULT_CA_NAME, metavar="CN")
    p.add_argument("--root-passphrase-file", type=Path, metavar="FILE",
                   help="encrypt the root's key with the passphrase in FILE (default: generate one beside the key)")

    p = sub.add_parser("issue-client", parents=[common], help="issue a certificate for a new client role")
    p.add_argument("role")
    p.add_argument("--days", type=int, default=CLIENT_DAYS)
    p.add_argument("--owner", metavar="UID:GID")

    p = sub.add_parser("issue-server", parents=[common], help="issue the broker certificate")
    p.add_argument("--host", required=True)
    p.add_argument("--days", type=int, default=SERVER_DAYS)
    p.add_argument("--owner", metavar="UID:GID")

    p = sub.add_parser("rotate", parents=[common], help="re-issue a certificate with a new key, revoking the old one")
    p.add_argument("name")
    p.add_argument("--days", type=int)
    p.add_argument("--owner", metavar="UID:GID")

    p = sub.add_parser("revoke", parents=[common], help="revoke a certificate; the broker refuses it from then on")
    p.add_argument("name")

    sub.add_parser("crl", parents=[common],
                   help="rebuild the issuing CA's revocation list: its entries plus every archived certificate")

    sub.add_parser("rotate-issuing-ca", parents=[common, root],
                   help="the root signs a new issuing CA; the current one stays trusted until every certificate "
                        "is rotated under the new one")

    sub.add_parser("replace-issuing-ca", parents=[common, root],
                   help="the root revokes the issuing CA and signs a new one, which re-issues every certificate")

    p = sub.add_parser("inspect", parents=[common, root], help="show certificates; exit 1 if any needs attention")
    p.add_argument("--warn-days", type=int, default=30)

    sub.add_parser("metrics", parents=[common],
                   help="print each certificate's expiry and usability as Prometheus metrics (textfile collector)")
    return parser


def _print_written(paths: list[Path]) -> None:
    for path in paths:
        print(f"wrote {path}")


def _read_passphrase(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise PKIError(f"Passphrase file {path} cannot be read ({exc.strerror}).") from None


def _inspect(pki_dir: Path, warn_days: int, root_dir: Path | None) -> int:
    if warn_days < 0:
        raise PKIError(f"--warn-days {warn_days} is invalid; it must be zero or more.")
    rows = check_pki(pki_dir, warn_days)
    header = ("NAME", "CN", "SANS", "EXPIRES", "DAYS LEFT", "STATUS", "CHAIN")
    table = [header] + [
        (
            r["name"],
            r.get("subject_cn", "?"),
            ",".join(r.get("sans", [])) or "-",
            r["not_after"][:10] if "not_after" in r else "?",
            str(r.get("days_left", "?")),
            r["status"],
            "valid" if r["chain"] == "valid" else "INVALID",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    problems = [r for r in rows if r["status"] != "OK" or r["chain"] != "valid"]
    for r in problems:
        if r["chain"] != "valid":
            print(f"{r['name']}: {r['chain']}")
    crl_ok, crl_line = check_crl(pki_dir)
    print(crl_line)
    waiting = under_previous(pki_dir)
    if waiting:
        print(f"previous issuing CA still signs {', '.join(waiting)}: `python -m tls rotate` each, then it can retire")
    root_key = root_key_on_host(pki_dir, root_dir)
    if root_key is not None:
        print(f"root: {root_key} is on this host; move it (and its passphrase, apart) offline")
    return EXIT_WARN if problems or not crl_ok else EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.command != "init" and not args.dir.is_dir():
        raise PKIError(f"PKI directory {args.dir} does not exist; run `python -m tls init` first.")
    owner = parse_owner(args.owner) if getattr(args, "owner", None) else None
    if args.command == "init":
        owners = dict(parse_named_owner(o) for o in args.owners)
        _print_written(bootstrap_pki(args.dir, args.broker_host, args.clients, owners, ca_common_name=args.ca_name,
                                     root_dir=args.root_dir,
                                     root_passphrase=_read_passphrase(args.root_passphrase_file),
                                     servers=args.servers))
    elif args.command == "issue-client":
        _print_written(add_client(args.dir, args.role, args.days, owner))
    elif args.command == "issue-server":
        _print_written(add_server(args.dir, args.host, args.days, owner))
    elif args.command == "rotate":
        result = rotate(args.dir, args.name, {args.name: owner} if owner else None, args.days)
        print(f"archived old {args.name} pair in {result.archive_dir}")
        _print_written(result.written)
    elif args.command == "revoke":
        revoked = revoke(args.dir, args.name)
        print(f"revoked {args.name}; its pair is archived in {revoked.archive_dir}")
        _print_written([revoked.crl])
    elif args.command == "crl":
        _print_written(rebuild_crl(args.dir))
    elif args.command == "rotate-issuing-ca":
        root_key, _ = load_root(args.dir, args.root_dir)
        rotated = rotate_issuing_ca(args.dir, root_key)
        if rotated.archive_dir is not None:
            print(f"retired the previous issuing CA (the root revoked it); its files are in {rotated.archive_dir}")
        _print_written(rotated.written)
        names = ", ".join(leaf_names(args.dir))
        print(f"now re-issue each certificate under the new issuing CA, at your pace: python -m tls rotate NAME "
              f"({names}); the broker's then needs `broker-boot reload-tls`")
    elif args.command == "replace-issuing-ca":
        root_key, _ = load_root(args.dir, args.root_dir)
        replaced = replace_issuing_ca(args.dir, root_key)
        print(f"revoked the old issuing CA; copies of the replaced files are in {replaced.archive_dir}")
        _print_written(replaced.written)
    elif args.command == "inspect":
        return _inspect(args.dir, args.warn_days, args.root_dir)
    elif args.command == "metrics":
        print(exposition(args.dir), end="")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except PKIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
