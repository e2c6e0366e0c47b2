"""Each role can do what it may and nothing else, enforced in the services whoever calls them."""

from datetime import date

import pytest
from trialkit import PASSWORD, UTC_TZ

from lotrack import db
from lotrack.errors import LotrackError, PermissionDenied
from lotrack.schemas.lots import LotIn, ProductIn
from lotrack.services import audit_trail, auth, lot_views, lots, products, storage, users

ROLES = ("admin", "pharmacist", "qa", "investigator", "monitor")

# action -> the roles allowed to perform it
ACTIONS = {
    "add a user": ({"admin"}, lambda s, a: users.add_user(
        s, a, f"new.{a.username}", "New User", ["monitor"], PASSWORD)),
    "deactivate a user": ({"admin"}, lambda s, a: users.deactivate_user(
        s, a, "victim", "test")),
    "change roles": ({"admin"}, lambda s, a: users.set_roles(
        s, a, "victim", ["monitor", "qa"], "test")),
    "reset a password": ({"admin"}, lambda s, a: users.reset_password(
        s, a, "victim", "another-password-1", "test")),
    "add a product": ({"qa"}, lambda s, a: products.add_product(
        s, a, ProductIn(code=f"P{a.id}", name="Product"))),
    "register a lot": ({"qa"}, lambda s, a: lots.register_lot(
        s, a, LotIn(lot_number=f"L{a.id}", product="BASE", manufactured_on=date(2026, 1, 1),
                    expiry_on=date(2026, 6, 1), vials=1))),
    "add a storage location": ({"pharmacist", "qa"}, lambda s, a: storage.add_location(
        s, a, f"SITE/F{a.id}", None)),
    "read the audit trail": (set(ROLES), lambda s, a: audit_trail.events(
        s, a, None, None, None, 5)),
    "verify the audit trail": (set(ROLES), lambda s, a: audit_trail.verify(s, a)),
    "list lots": (set(ROLES), lambda s, a: lot_views.lot_rows(s, a, None, None, UTC_TZ)),
}


@pytest.fixture
def staff(database, make_user):
    for role in ROLES:
        make_user(f"{role}.user", role)
    make_user("victim", "monitor")
    make_user("qa.setup", "qa")
    with db.unit_of_work(database.engine) as session:
        qa = auth.authenticate(session, "qa.setup", PASSWORD)
        products.add_product(session, qa, ProductIn(code="BASE", name="Base product"))
        session.commit()
    return database


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_role_matrix(staff, role, action):
    allowed, call = ACTIONS[action]
    with db.unit_of_work(staff.engine) as session:
        actor = auth.authenticate(session, f"{role}.user", PASSWORD)
        if role in allowed:
            try:
                call(session, actor)
            except PermissionDenied as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{role} may {action} but was refused: {exc}")
            except LotrackError:
                pass  # a business rule, not a permission: the role was let through
        else:
            with pytest.raises(PermissionDenied):
                call(session, actor)
