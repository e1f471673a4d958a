"""`hookline tenants create | list | keys`: onboarding customers from a shell.

The same DAOs as /v1/tenants (shared.db.tenants, shared.db.keys), straight on the
database: it works before any operator key exists. Output is JSON, one document.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

OPERATOR = "operator"


def _sender(spec: str) -> dict[str, str | None]:
    """SOURCE:SENDER[:CHANNEL]."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise argparse.ArgumentTypeError(f"{spec!r}: expected SOURCE:SENDER[:CHANNEL]")
    return {"source": parts[0], "sender": parts[1],
            "channel": parts[2] if len(parts) == 3 else None}


def cmd_tenants(args: argparse.Namespace) -> int:
    # Imported here as the other commands do: `hookline --help` stays quick.
    import orjson
    import psycopg

    from shared import config, status
    from shared.db import keys, tenants

    try:
        settings = config.load(status.service_env(args.data_dir))
        url = settings.require_database()
    except config.ConfigError as exc:
        sys.exit(f"hookline tenants: {exc}")
    out: Any
    try:
        with psycopg.connect(url) as conn:
            if args.action == "create":
                out = tenants.create(conn, args.name, args.sender)
            elif args.action == "list":
                out = tenants.list_page(conn, args.limit, args.after)
            else:
                tenant_id = None if args.tenant == OPERATOR else args.tenant
                if tenant_id is not None and tenants.get(conn, tenant_id) is None:
                    sys.exit(f"hookline tenants: no tenant {tenant_id!r}")
                if args.create:
                    kind = OPERATOR if tenant_id is None else args.kind
                    out = keys.create(conn, tenant_id, args.create, kind)
                elif args.revoke:
                    if not keys.revoke(conn, tenant_id, args.revoke):
                        sys.exit(f"hookline tenants: no key {args.revoke!r}")
                    out = {"revoked": args.revoke}
                else:
                    out = keys.list_for(conn, tenant_id)
    except tenants.SenderTaken as exc:
        sys.exit(f"hookline tenants: {exc}")
    except psycopg.Error as exc:
        sys.exit(f"hookline tenants: {str(exc).strip().splitlines()[0]}")
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    return 0


def add_parsers(sub: argparse._SubParsersAction, data_dir_arg: Any) -> None:
    t = sub.add_parser("tenants", help="tenants (customers) and their keys")
    actions = t.add_subparsers(dest="action", required=True)
    s = actions.add_parser("create", help="a new tenant with the senders it owns")
    s.add_argument("name", help="the customer's name")
    s.add_argument("--sender", type=_sender, action="append", default=[],
                   metavar="SOURCE:SENDER[:CHANNEL]",
                   help="a sender it owns (repeat for more), e.g. kaleyra-rcs:acme_agent")
    data_dir_arg(s)
    s = actions.add_parser("list", help="tenants, oldest first")
    s.add_argument("--limit", type=int, default=100, help="at most this many")
    s.add_argument("--after", default=None, help="the last id of the previous page")
    data_dir_arg(s)
    s = actions.add_parser("keys", help="list, create or revoke a tenant's (or the "
                                        "operator's) keys")
    s.add_argument("tenant", help=f"a tenant id, or {OPERATOR!r} for the operator keys")
    s.add_argument("--create", metavar="NAME", default=None,
                   help="make a key with this name; its secret is printed this once")
    s.add_argument("--kind", choices=("api", "callback"), default="api",
                   help="with --create for a tenant: api (reads /v1) or callback")
    s.add_argument("--revoke", metavar="KEY_ID", default=None, help="revoke this key now")
    data_dir_arg(s)
    t.set_defaults(func=cmd_tenants)
