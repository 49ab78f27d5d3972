"""files.py's helpers used across the package: safe names, JSON written once, one way."""
import json
import math

import numpy as np

from jax_inpaint import files


def test_safe_name():
    assert files.safe_name("b wide.png") == "b_wide.png"
    assert files.safe_name("../../etc/passwd") == "etc_passwd"
    assert files.safe_name("a/b\\c:d*e") == "a_b_c_d_e"
    assert files.safe_name("ünï cödé") == "n_c_d"
    assert files.safe_name("...") == "item" and files.safe_name("", "image") == "image"


def test_json_numpy_and_non_finite(tmp_path):
    data = {1: (np.float32(0.5), np.int64(3), np.bool_(True)), "a": np.arange(3), "bad": [float("nan"), np.inf]}
    assert files.jsonable(data) == {"1": [0.5, 3, True], "a": [0, 1, 2], "bad": [data["bad"][0], math.inf]}
    assert files.jsonable(data, nan_to_null=True)["bad"] == [None, None]
    path = tmp_path / "x.json"
    files.write_json(path, data)
    assert "NaN" in path.read_text() and "Infinity" in path.read_text()
    files.write_json(path, data, nan_to_null=True)
    assert json.loads(path.read_text()) == {"1": [0.5, 3, True], "a": [0, 1, 2], "bad": [None, None]}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # nothing temporary left
