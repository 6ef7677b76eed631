"""The alarm REST API, its users and audit log, and the web console (README.md here)."""

from ingest.api.app import create_app
from ingest.api.audit import AuditLog
from ingest.api.auth import Role, Tokens, User
from ingest.api.server import ApiServer

__all__ = ["ApiServer", "AuditLog", "Role", "Tokens", "User", "create_app"]
