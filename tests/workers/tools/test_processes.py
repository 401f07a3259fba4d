"""``ChildProcesses``: a child's own environment reaches that child only."""

from __future__ import annotations

import sys
from pathlib import Path

from workers.tools.processes import ChildProcesses

PRINT_ENV = "import os; print(os.environ.get('SECRET_X', '-'), os.environ.get('SHARED_Y', '-'))"


def test_a_childs_own_env_reaches_it_alone(tmp_path: Path) -> None:
    with ChildProcesses(log_dir=tmp_path, env={"SHARED_Y": "shared"}) as children:
        own = children.start("own", [sys.executable, "-c", PRINT_ENV], env={"SECRET_X": "s3"})
        other = children.start("other", [sys.executable, "-c", PRINT_ENV])
        assert "s3" not in " ".join(str(a) for a in own.args)
        own.wait(timeout=30)
        other.wait(timeout=30)
    assert (tmp_path / "own.log").read_text().split() == ["s3", "shared"]
    assert (tmp_path / "other.log").read_text().split() == ["-", "shared"]
