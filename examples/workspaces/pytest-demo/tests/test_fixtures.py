def test_with_broken_database(database):
    assert database.ping()


def test_leaves_a_mess(scratch_file):
    assert scratch_file.read_text() == "temporary"


def test_with_working_fixture(tmp_path):
    (tmp_path / "out.txt").write_text("done")
    assert (tmp_path / "out.txt").read_text() == "done"


def test_fails_and_leaves_a_mess(scratch_file):
    # Fails in its call and errors in teardown: pytest counts it as "1 failed, 1 error".
    assert scratch_file.read_text() == "permanent"
