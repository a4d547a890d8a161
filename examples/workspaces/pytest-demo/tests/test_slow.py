import time

import pytest


@pytest.mark.slow
def test_slow_computation():
    time.sleep(3)
    assert sum(range(1000)) == 499500
