"""`python -m ingest.api new-token NAME ROLE`: a fresh token for api-tokens.yaml."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Sequence

from ingest.api.auth import Role, hash_token

ROLES = [role.value for role in Role]


def main(argv: Sequence[str]) -> int:
    if len(argv) != 3 or argv[0] != "new-token" or argv[2] not in ROLES:
        print(f"usage: python -m ingest.api new-token NAME {'|'.join(ROLES)}", file=sys.stderr)
        return 2
    name, role = argv[1], argv[2]
    token = secrets.token_urlsafe(32)
    # Only the hash goes in the file; the token itself is shown this once.
    print(f"token for {name} (hand it over; it is stored nowhere): {token}")
    print(f"  - {{name: {name}, role: {role}, token_sha256: {hash_token(token).hex()}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
