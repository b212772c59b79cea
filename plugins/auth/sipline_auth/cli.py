"""``sipline user add | passwd | rm | list``: the subscribers of digest authentication.

Registered through the ``register_cli_commands`` hook. Every subcommand takes
``-c FILE`` (added by the core) for ``[database]`` and ``[plugins.auth]``. A
running server sees the change at the next attempt of the user it concerns
(``add``, ``passwd``) or within ``[plugins.auth] reload_interval`` (``rm``).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sipline_auth.config import AuthConfig
from sipline_auth.digest import HA1_COLUMNS, ha1

if TYPE_CHECKING:
    from sipline.config import Config
    from sqlalchemy.engine import Engine

# SQLAlchemy, the model and the schema helpers are imported inside the functions that use
# them: every `sipline` command builds its parser with this module loaded, and importing
# SQLAlchemy's ORM costs most of a second.

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_DATABASE = 4  # as the core: unreachable, migration failed, schema behind
EXIT_REFUSED = 5  # add: the user exists; passwd, rm: no such user
EPILOG = (
    "exit codes: 0 ok, 1 invalid configuration, 2 bad command line, 4 database error "
    "(unreachable, schema behind with auto_upgrade off), 5 the user already exists (add) "
    "or does not exist (passwd, rm)"
)


class UserError(Exception):
    """A user command that cannot be done; the message says why."""


class PasswordInputError(Exception):
    """No usable password was given."""


def split_address(text: str) -> tuple[str, str]:
    """``user@domain`` -> ``(user, domain lowercased)``."""
    user, sep, domain = text.rpartition("@")
    if not sep or not user or not domain or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"expected USER@DOMAIN, got {text!r}")
    return user, domain.lower()


def credentials_row(username: str, domain: str, password: str, settings: AuthConfig) -> dict[str, str]:
    """The ``password`` and ``ha1*`` columns for a new password."""
    realm = settings.realm or domain
    row = {column: ha1(alg, username, realm, password) for alg, column in HA1_COLUMNS.items()}
    row["password"] = password if settings.store_password else ""
    return row


def add_user(engine: Engine, username: str, domain: str, password: str, settings: AuthConfig) -> None:
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from sipline_auth.models import subscriber

    row = {"username": username, "domain": domain,
           **credentials_row(username, domain, password, settings)}
    try:
        with engine.begin() as conn:
            conn.execute(insert(subscriber).values(**row))
    except IntegrityError:
        raise UserError(f"{username}@{domain} already exists (use `sipline user passwd`)") from None


def set_password(engine: Engine, username: str, domain: str, password: str,
                 settings: AuthConfig) -> None:
    from sqlalchemy import update

    from sipline_auth.models import subscriber

    with engine.begin() as conn:
        done = conn.execute(
            update(subscriber)
            .where(subscriber.c.username == username, subscriber.c.domain == domain)
            .values(**credentials_row(username, domain, password, settings))
        ).rowcount
    if not done:
        raise UserError(f"no such user: {username}@{domain}")


def remove_user(engine: Engine, username: str, domain: str) -> None:
    from sqlalchemy import delete

    from sipline_auth.models import subscriber

    with engine.begin() as conn:
        done = conn.execute(
            delete(subscriber).where(subscriber.c.username == username,
                                     subscriber.c.domain == domain)
        ).rowcount
    if not done:
        raise UserError(f"no such user: {username}@{domain}")


def list_users(engine: Engine, domain: str | None = None) -> list[str]:
    from sqlalchemy import select

    from sipline_auth.models import subscriber

    query = select(subscriber.c.username, subscriber.c.domain).order_by(
        subscriber.c.domain, subscriber.c.username)
    if domain is not None:
        query = query.where(subscriber.c.domain == domain.lower())
    with engine.connect() as conn:
        return [f"{u}@{d}" for u, d in conn.execute(query)]


# ------------------------------------------------------------------------------ argparse

def _config_option(parser: argparse.ArgumentParser) -> None:
    # The core puts -c before ACTION; accept it after ACTION too (`user add X P -c FILE`).
    # SUPPRESS: when absent here, the value given before ACTION stays.
    parser.add_argument("-c", "--config", metavar="FILE", type=Path, default=argparse.SUPPRESS,
                        help="TOML configuration file ([database], [plugins.auth])")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="user_command", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("add", help="add a subscriber", epilog=EPILOG,
                       description="Add a subscriber (its ha1 columns; the plaintext too when "
                       "[plugins.auth] store_password = true).")
    _config_option(p)
    p.add_argument("address", metavar="USER@DOMAIN", type=split_address)
    p.add_argument("password", nargs="?", metavar="PASSWORD",
                   help="default: read from the terminal, or one line of standard input")
    p = sub.add_parser("passwd", help="change a subscriber's password", epilog=EPILOG,
                       description="Change a subscriber's password.")
    _config_option(p)
    p.add_argument("address", metavar="USER@DOMAIN", type=split_address)
    p.add_argument("password", nargs="?", metavar="PASSWORD",
                   help="default: read from the terminal, or one line of standard input")
    p = sub.add_parser("rm", help="remove a subscriber", epilog=EPILOG, description="Remove a subscriber.")
    _config_option(p)
    p.add_argument("address", metavar="USER@DOMAIN", type=split_address)
    p = sub.add_parser("list", help="list subscribers", epilog=EPILOG,
                       description="List subscribers as USER@DOMAIN, one a line.")
    _config_option(p)
    p.add_argument("domain", nargs="?", help="only this domain")


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return str(args.password)
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise PasswordInputError("the passwords differ")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise PasswordInputError("empty password")
    return password


def handle(args: argparse.Namespace, config: Config) -> int:
    """The ``sipline user`` handler: the exit code."""
    from sqlalchemy.exc import SQLAlchemyError

    from sipline_auth.schema import ensure_schema

    from sipline.db import DatabaseError, display_url, engine_for

    settings = config.plugin("auth") or AuthConfig()
    engine = engine_for(config)
    try:
        for step in ensure_schema(config, engine):
            print(f"database auto_upgrade: {step}", file=sys.stderr)
        action = args.user_command
        if action == "list":
            for line in list_users(engine, args.domain):
                print(line)
            return EXIT_OK
        username, domain = args.address
        if action == "add":
            add_user(engine, username, domain, _password(args), settings)
            print(f"added {username}@{domain}")
        elif action == "passwd":
            set_password(engine, username, domain, _password(args), settings)
            print(f"changed the password of {username}@{domain}")
        elif action == "rm":
            remove_user(engine, username, domain)
            print(f"removed {username}@{domain}")
        return EXIT_OK
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except PasswordInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATABASE
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"error: database {display_url(config.database_url)}: {reason}", file=sys.stderr)
        return EXIT_DATABASE
    finally:
        engine.dispose()
