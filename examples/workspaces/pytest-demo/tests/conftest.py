import pytest


@pytest.fixture
def database():
    raise ConnectionError("database at db.example:5432 refused the connection")


@pytest.fixture
def scratch_file(tmp_path):
    path = tmp_path / "scratch.txt"
    path.write_text("temporary")
    yield path
    # Teardown checks the test cleaned up after itself; this one never does.
    if path.exists():
        raise RuntimeError(f"{path.name} was left behind by the test")


@pytest.fixture
def greeting():
    return "hello"
