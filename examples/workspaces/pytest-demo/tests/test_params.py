import pytest


@pytest.mark.parametrize(("number", "square"), [(2, 4), (3, 9), (4, 15)])
def test_square(number, square):
    assert number * number == square
