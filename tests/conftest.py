"""Test order for ``make test`` (pytest-xdist, ``--dist loadfile --no-loadscope-reorder``).

The deployment files mostly wait (real SuperLinks and SuperNodes, heartbeats, round timeouts:
~1-3 minutes each) and hold few tests; xdist's default reorder (most tests first) left them
for last, so the suite ended with one worker waiting on them alone. The longest (the fault
story, ~3 minutes) starts first now, and the other two keep their place in the file order,
mid-suite: started together with it, the TLS test's three hospitals slowed its rounds past
their timeouts.
"""

from __future__ import annotations

import pytest

FIRST = ("test_deployment_faults.py",)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Move the tests of ``FIRST`` to the front (in that order); the rest keep theirs."""
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return FIRST.index(name) if name in FIRST else len(FIRST)

    items.sort(key=rank)
