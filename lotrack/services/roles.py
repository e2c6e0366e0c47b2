"""Who may do what. Every service that changes or signs something calls `require_role`."""

from __future__ import annotations

from lotrack.errors import PermissionDenied
from lotrack.models import User


def require_role(actor: User, *roles: str, action: str) -> None:
    """Refuse `actor` unless active and holding one of `roles` (admin is not a wildcard:
    separation of duties means an administrator cannot release a lot without `qa`)."""
    if not actor.active:
        raise PermissionDenied(f"user {actor.username} is deactivated")
    if not any(actor.has_role(role) for role in roles):
        wanted = " or ".join(roles)
        raise PermissionDenied(f"{action} needs the {wanted} role; {actor.username} has "
                               f"{', '.join(actor.role_names) or 'no role'}")
