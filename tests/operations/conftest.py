from tests.support.fake_cluster import fake  # noqa: F401 - the fixture
