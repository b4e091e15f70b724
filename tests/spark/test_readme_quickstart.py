"""The README's quick start, extracted from README.md and run as a user would (a Python process
of its own, an embedded local Spark): it trains, returns what it says, exports and scores."""
from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme_quick_start() -> str:
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text[text.index("## Quick start"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("\n```", start)]


def test_the_readme_quick_start_runs_as_written(tmp_path):
    code = readme_quick_start().replace("/tmp/quickstart", str(tmp_path / "quickstart"))
    script = tmp_path / "quickstart.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.pop("SPARK_REMOTE", None)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    weights = re.search(r"^\[([-\d.e, ]+)\]$", done.stdout, re.M)
    assert weights, done.stdout[-3000:]
    assert all(abs(float(w) - 2.0) < 0.2 for w in weights.group(1).split(","))  # y = 2x
    assert "epoch 20/20" in done.stderr + done.stdout
    assert os.path.isdir(tmp_path / "quickstart" / "export" / "1")
    scored = re.findall(r"^\|\[([\d.]+)\]\|([\d.]+)\|\s*\[([-\d.e]+)\]\|$", done.stdout, re.M)
    assert len(scored) == 3 and all(abs(float(p) - float(y)) < 0.1 for _, y, p in scored)
