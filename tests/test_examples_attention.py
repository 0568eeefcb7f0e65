"""The attention captioning example runs (short version) and writes its picture."""
import os
import runpy

import numpy as np
import pytest

FAMILY = "attention"
HERE = os.path.join(os.path.dirname(__file__), "..", "examples")


def test_captioning_attention_example(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "att.png"
    main = runpy.run_path(os.path.join(HERE, "captioning_attention.py"))["main"]
    r = main(["--steps", "2", "--features", "32", "--out", str(out)])
    assert out.stat().st_size > 1000
    w = r["weights"]
    assert w.shape == (2, 14, 14)
    np.testing.assert_allclose(w.sum(axis=(1, 2)), 1, rtol=1e-5)
    # each step attends the object it asks for (peak within 2 regions of its centre)
    assert (np.abs(r["peaks"] - r["centres"]).max(axis=1) <= 2).all()
