import sys

import pytest


@pytest.mark.smoke
def test_addition():
    assert 1 + 1 == 2


@pytest.mark.smoke
def test_greeting(greeting):
    assert greeting.upper() == "HELLO"


def test_failing_assertion():
    expected = {"status": "ok", "items": 3}
    actual = {"status": "ok", "items": 2}
    print("comparing the API answer with the expected one")
    assert actual == expected


@pytest.mark.skip(reason="the feature is not built yet")
def test_skipped():
    raise AssertionError("never runs")


def test_skipped_at_runtime():
    if sys.platform != "plan9":
        pytest.skip("only meaningful on plan9")


@pytest.mark.xfail(reason="known bug: rounding", strict=True)
def test_known_bug():
    assert round(2.675, 2) == 2.68


@pytest.mark.xfail(reason="was a bug, fixed since")
def test_fixed_bug():
    assert "anvil".title() == "Anvil"
