"""The first admin can sign in on both databases and the fresh trail verifies."""

from lotrack import audit, db
from lotrack.services import auth


def test_first_admin_authenticates_and_trail_verifies(database, make_user):
    make_user("qa.lee", "qa")
    with db.unit_of_work(database.engine) as session:
        user = auth.authenticate(session, "qa.lee", "correct-horse-42")
        assert user.role_names == ["qa"]
        report = audit.verify(session)
    assert report.ok, report.problems
    assert report.events == 2
