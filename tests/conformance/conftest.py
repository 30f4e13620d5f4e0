"""Servers the state-backend suites run against, one of each per test worker."""

from tests.state_servers import moto, postgres  # noqa: F401 - fixtures
