"""Fixtures shared by the server tests."""

from __future__ import annotations

import pytest

from tests.support.layercode_cloud import StandIn
from tests.support.servers import serve


@pytest.fixture(scope="module")
def standin():
    """A stand-in for Layercode's cloud on a real port; a test sets its `mode`."""
    cloud = StandIn()
    with serve(cloud.app()) as url:
        cloud.url = url
        yield cloud
