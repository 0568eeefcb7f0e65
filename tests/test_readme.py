"""The README's usage example runs as written (its own asserts check parity)."""
import pathlib
import re

import numpy as np

FAMILY = "rng"

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_usage_example_runs_and_matches_numpy():
    import dlkernels

    before = dlkernels.get_num_threads()
    text = README.read_text()
    m = re.search(r"## Usage\s+```python\n(.*?)```", text, re.S)
    assert m, "README has no python block under '## Usage'"
    ns = {}
    exec(compile(m.group(1), "README.md", "exec"), ns)
    ref = np.random.Generator(np.random.Philox(1234)).random(10**7, dtype=np.float32)
    assert np.array_equal(ns["u"], ref)
    assert ns["rows"].shape == (8, 100)
    dlkernels.set_num_threads(before)
