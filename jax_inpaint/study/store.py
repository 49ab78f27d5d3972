"""The resume store of a study: its output folder's study.json (the fingerprint) and cases/<case>.json.

Every file is written to a temporary name and renamed. A rerun with the same options skips every case
whose record exists and carries the same key (`case_key`: the study fingerprint, the target's pixels and
the mask), so a changed image file or mask recomputes just that case. A folder whose fingerprint differs
from the run's is refused (`check_study`: an InputError naming the differences).
"""
from __future__ import annotations

import json
import os

from jax_inpaint.errors import InputError
from jax_inpaint.study.plan import Case
from jax_inpaint.study.records import FORMAT_VERSION, differences, digest, jsonable, write_json

STUDY_FILE = "study.json"
CASES = "cases"


def check_study(out: str, fingerprint: dict) -> None:
    """Make `out` hold this study: a new folder gets study.json; an existing study must have the same
    fingerprint; a non-empty folder that holds no study is refused."""
    path = os.path.join(out, STUDY_FILE)
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)["fingerprint"]
            if not isinstance(old, dict):
                raise TypeError(f"'fingerprint' is {type(old).__name__}, not an object")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}: unreadable ({e}); delete the folder to start again") from None
        new = jsonable(fingerprint)
        if old != new:
            raise InputError(f"{out}: holds an evaluation made with other options ({'; '.join(differences(old, new))})."
                             " Use another --out folder, or delete this one to start again.")
        os.makedirs(os.path.join(out, CASES), exist_ok=True)
        return
    if os.path.isdir(out) and any(not n.startswith(".") for n in os.listdir(out)):
        raise InputError(f"{out}: exists, is not empty and holds no evaluation (no study.json); choose "
                         "another --out folder")
    os.makedirs(os.path.join(out, CASES), exist_ok=True)
    write_json(path, {"format": "jax-inpaint-evaluation", "format_version": FORMAT_VERSION,
                      "fingerprint": fingerprint})


def case_key(fingerprint_hash: str, case: Case) -> str:
    """What a case's record depends on: the study, the target's pixels, the family, the ratio and the mask."""
    return digest(fingerprint_hash, case.target.digest, case.family, f"{case.ratio:.6f}", case.hole)


def record_path(out: str, case_id: str) -> str:
    return os.path.join(out, CASES, f"{case_id}.json")


def load_record(out: str, case_id: str) -> dict | None:
    """A case's record, or None when there is none (or it is damaged, or not a JSON object: the case is
    then recomputed)."""
    try:
        with open(record_path(out, case_id)) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None
