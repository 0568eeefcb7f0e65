"""The GAN examples run (short versions) and write their pictures."""
import os
import runpy
import sys

import pytest

FAMILY = "gan"
HERE = os.path.join(os.path.dirname(__file__), "..", "examples")


def _main(name):
    return runpy.run_path(os.path.join(HERE, name))["main"]


def test_gan_ring_example(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "ring.png"
    m = _main("gan_ring.py")(["--steps", "64", "--batch-size", "128", "--hidden", "16",
                              "--out", str(out)])
    assert out.stat().st_size > 1000
    assert 0 <= m["modes_captured"] <= 8


def test_gan_digits_example(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    out = tmp_path / "digits.png"
    ll = _main("gan_digits.py")(["--epochs", "1", "--out", str(out)])
    assert out.stat().st_size > 1000
    assert ll == ll  # finite number (not NaN)
