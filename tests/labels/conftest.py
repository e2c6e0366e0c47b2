"""A small trial for the label tests, on each database."""

import pytest
from trialkit import Trial


@pytest.fixture
def trial(database, make_user) -> Trial:
    return Trial.build(database, make_user)
