"""The Docker deployment's secrets: refuse placeholders, and generate real values.

``check`` runs first in the ``airflow-init`` service (docker-compose.yaml), so the stack never
starts with a secret that .env.example ships or leaves empty: anyone who read this repository
could sign API tokens or log in as the admin. It exits 1 and names every offending variable.

``fill FILE`` replaces such values in a .env file with freshly generated ones and keeps every
other line, so ``cp .env.example .env && python3 scripts/env_secrets.py fill .env`` gives the
demo (and a first production .env) real secrets without an editor, make or Docker.

Only the standard library: it runs with the image's Python before anything else is set up,
and with any Python 3 on the host.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

#: The secrets that must never keep a shipped value, and how to generate each.
SECRETS: dict[str, Callable[[], str]] = {
    "AIRFLOW__API_AUTH__JWT_SECRET": lambda: secrets.token_urlsafe(32),
    "AIRFLOW__API__SECRET_KEY": lambda: secrets.token_urlsafe(32),
    # A Fernet key is 32 random bytes in URL-safe base64, what cryptography's generate_key() returns.
    "AIRFLOW__CORE__FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "_AIRFLOW_WWW_USER_PASSWORD": lambda: secrets.token_urlsafe(18),
}
PLACEHOLDER_PREFIX = "change-me"
FERNET_KEY = "AIRFLOW__CORE__FERNET_KEY"

_ASSIGNMENT = re.compile(r"^(?P<name>[A-Z_][A-Z0-9_]*)=(?P<value>.*)$")


def problem(name: str, value: str | None) -> str | None:
    """Why ``value`` cannot be the secret ``name``, or None when it can."""
    text = _unquote(value or "")
    if not text:
        return "is empty"
    if text.lower().startswith(PLACEHOLDER_PREFIX):
        return f"is still the placeholder of .env.example ({text})"
    if name == FERNET_KEY and not _is_fernet_key(text):
        return "is not a Fernet key (32 bytes in URL-safe base64)"
    return None


def problems(environ: Mapping[str, str]) -> dict[str, str]:
    """Each secret of ``environ`` that must be changed -> why."""
    found = {name: problem(name, environ.get(name)) for name in SECRETS}
    return {name: reason for name, reason in found.items() if reason}


def fill(text: str) -> tuple[str, list[str]]:
    """``text`` of a .env file with every unusable secret generated afresh, and their names.

    Only uncommented assignments are replaced; a secret that is missing altogether is appended.
    """
    lines, filled, seen = text.splitlines(), [], set()
    for index, line in enumerate(lines):
        match = _ASSIGNMENT.match(line)
        if match is None or match["name"] not in SECRETS:
            continue
        name = match["name"]
        seen.add(name)
        if problem(name, match["value"]):
            lines[index] = f"{name}={SECRETS[name]()}"
            filled.append(name)
    for name in SECRETS.keys() - seen:
        lines.append(f"{name}={SECRETS[name]()}")
        filled.append(name)
    return "\n".join(lines) + "\n", filled


def _unquote(value: str) -> str:
    """The value as Compose reads an unquoted or quoted .env value, without surrounding blanks."""
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1].strip()
    return text


def _is_fernet_key(text: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(text.encode("ascii"))) == 32
    except (binascii.Error, ValueError):
        return False


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` through a temp file + rename, keeping its permissions (.env is private)."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check(_: argparse.Namespace) -> int:
    found = problems(os.environ)
    for name, reason in found.items():
        print(f"env_secrets: {name} {reason}; set a real value in .env", file=sys.stderr)
    if found:
        print(
            "env_secrets: refusing to start; python3 scripts/env_secrets.py fill .env generates them", file=sys.stderr
        )
        return 1
    return 0


def _fill(args: argparse.Namespace) -> int:
    text, filled = fill(args.env_file.read_text(encoding="utf-8"))
    if filled:
        _write_atomically(args.env_file, text)
    print(f"{args.env_file}: generated {', '.join(filled) or 'nothing (every secret is set)'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``check`` (the environment) or ``fill FILE``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    commands.add_parser("check", help="exit 1 naming each secret still empty or a placeholder").set_defaults(run=_check)
    filler = commands.add_parser("fill", help="generate every empty or placeholder secret of a .env file")
    filler.add_argument("env_file", type=Path, metavar="FILE")
    filler.set_defaults(run=_fill)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
