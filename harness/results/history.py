"""Which tests failed in a results directory's last runs, so that the next run starts with
them: after a red verdict and a fix, `-x` says within seconds whether the fix holds."""
from __future__ import annotations

import json
import os
from pathlib import Path

FILE = "last-failed.json"


def failed_last(results: Path) -> set[str]:
    """The test ids that failed when they last ran (none if the file is absent or unreadable:
    it only orders the suite, it never decides a verdict)."""
    try:
        ids = json.loads((results / FILE).read_text())
    except (OSError, ValueError):
        return set()
    return {i for i in ids if isinstance(i, str)} if isinstance(ids, list) else set()


def record(results: Path, passed: dict[str, bool]) -> None:
    """Test id -> passed, for the tests this run ran; a test it did not run keeps its entry,
    so a narrowed run forgets nothing."""
    failed = (failed_last(results) - {t for t, ok in passed.items() if ok}) \
        | {t for t, ok in passed.items() if not ok}
    results.mkdir(parents=True, exist_ok=True)
    tmp = results / f".{FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(sorted(failed), indent=1) + "\n")
    tmp.replace(results / FILE)
