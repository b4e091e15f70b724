"""The documented YARN walkthrough (docs/deploying.md), extracted from the docs and run on the
real HDFS + YARN.

Every command of the ```bash block under "## YARN" runs as written, in one bash process, from
a fresh folder (with ``examples/`` linked in) and the virtualenv's ``python``/``spark-submit``
first on PATH: pack + upload, data setup, training in client and cluster mode, ``yarn logs``,
inference. The one exception is waiting: YARN aggregates an application's logs a moment after
it ends, so the ``yarn logs`` command is retried (for up to 60 s) until it finds the line, as a
user would run it again. Docs and test cannot drift apart: change one, the other follows.
The same walkthrough runs again on the Kerberized cluster after the Kerberos block of
docs/security.md.
Like every other test here, the drivers run without Spark's web UI (``SPARK_SUBMIT_OPTS``):
its Jetty start-up now and then races (ConcurrentModificationException in
ServletHandler.initialize, inside SparkContext's constructor), which is Spark's, not the
walkthrough's, to fix.
"""
from __future__ import annotations

import getpass
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOYING = os.path.join(ROOT, "docs", "deploying.md")
SECURITY = os.path.join(ROOT, "docs", "security.md")
STAMP = "@@tfspark-step"

pytestmark = pytest.mark.slow


def readme_yarn_commands(heading: str = "## YARN (client and cluster deploy mode)",
                         page: str = DEPLOYING) -> list:
    """The logical commands (continuation lines joined) of the first bash block under
    ``heading`` of the docs ``page``."""
    text = open(page).read()
    section = text[text.index(heading):]
    start = section.index("```bash\n") + len("```bash\n")
    block = section[start:section.index("\n```", start)]
    commands, current = [], []
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current.append(line)
        if not line.endswith("\\"):
            commands.append("\n".join(current))
            current = []
    return commands


def _script(commands: list, logs_instead: str = "") -> str:
    """One bash script: each command announced with a timestamp, its output lines stamped;
    ``logs_instead`` (a command) replaces ``yarn logs`` where YARN aggregates no logs."""
    stamp = (f"{shlex.quote(sys.executable)} -u -c 'import sys, time\n"
             "for line in sys.stdin: print(f\"{time.time():.1f} {line}\", end=\"\")'")
    lines = ["set -euo pipefail"]
    for i, command in enumerate(commands):
        lines.append(f'echo "{STAMP} {i} $(date +%s.%N)"')
        if command.startswith("yarn logs") and logs_instead:
            lines.append(f"{{ {logs_instead}\n}} 2>&1 | {stamp}")
        elif command.startswith("yarn logs"):
            lines.append(f"for attempt in $(seq 30); do\n  if {command} 2>&1 | {stamp}; then "
                         "break; fi\n  [ $attempt -lt 30 ] && sleep 2\ndone")
        elif re.match(r"(export\s+)?\w+=", command):  # assignments stay in this shell
            lines.append(command)
        else:
            lines.append(f"{{ {command}\n}} 2>&1 | {stamp}")
    return "\n".join(lines) + "\n"


def _steps(output: str, commands: list) -> list:
    """[(command, start time, [(time, line), ...])] from the script's output."""
    steps = []
    for line in output.splitlines():
        if line.startswith(STAMP):
            _, index, started = line.split()
            steps.append((commands[int(index)], float(started), []))
        elif steps:
            stamp, _, rest = line.partition(" ")
            try:
                steps[-1][2].append((float(stamp), rest))
            except ValueError:
                steps[-1][2].append((steps[-1][1], line))
    return steps


def _step(steps: list, *needles: str):
    found = [s for s in steps if all(n in s[0] for n in needles)]
    assert len(found) == 1, f"expected one documented step with {needles}, got {len(found)}"
    command, started, lines = found[0]
    return started, lines, "\n".join(text for _, text in lines)


def test_readme_yarn_walkthrough_runs_as_written(yarn_cluster, tmp_path):
    _run_walkthrough(yarn_cluster, tmp_path, readme_yarn_commands(), {})


def test_readme_yarn_walkthrough_runs_on_a_kerberized_cluster(secure_hadoop, tmp_path):
    """The docs' Kerberos block, then the same YARN walkthrough, on the Kerberized HDFS +
    YARN (``secure_hadoop``: tokens live 60 s at most, so the applications' keytab logins
    matter). Its NodeManager aggregates no logs (no libhadoop.so: see docs/security.md), so the
    ``yarn logs`` step reads the cluster-mode application's stdout in its log folder."""
    kerberos = readme_yarn_commands("## Kerberos (secure HDFS and YARN)", SECURITY)
    assert any(c.startswith("kinit") for c in kerberos)
    nm_logs = shlex.quote(str(secure_hadoop.base_dir / "nm-logs"))
    logs_instead = (f"cat {nm_logs}/$(ls -t {nm_logs} | head -1)/*/stdout | grep exported")
    env = {"PRINCIPAL": secure_hadoop.user_principal, "KEYTAB": str(secure_hadoop.user_keytab),
           "KRB5CCNAME": f"FILE:{tmp_path / 'krb5cc'}"}
    steps = _run_walkthrough(secure_hadoop, tmp_path, kerberos + readme_yarn_commands(), env,
                             logs_instead)
    _, _, login = _step(steps, "kinit")
    assert "kinit" not in login  # no complaint
    assert os.path.exists(tmp_path / "krb5cc")


def _run_walkthrough(cluster, tmp_path, commands: list, extra_env: dict,
                     logs_instead: str = "") -> list:
    """Run ``commands`` (the documented ones) from a fresh folder against ``cluster``; check each
    step's output; return the steps."""
    assert any("tfspark.pack" in c for c in commands) and len(commands) >= 8
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(os.path.join(ROOT, "examples"), work / "examples")
    env = dict(os.environ, **cluster.env(), USER=getpass.getuser(),
               SPARK_LOCAL_IP="127.0.0.1", TF_CPP_MIN_LOG_LEVEL="2",
               SPARK_SUBMIT_OPTS="-Dspark.ui.enabled=false", **extra_env)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env["PATH"]])
    for name in ("HADOOP_USER_NAME", "SPARK_HOME", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON",
                 "PYTHONPATH", "KERBEROS"):
        env.pop(name, None)
    script = tmp_path / "readme-yarn.sh"
    script.write_text(_script(commands, logs_instead))
    pack_dirs = os.path.join(tempfile.gettempdir(), "tfspark-pack-*")
    packed_before = set(glob.glob(pack_dirs))
    proc = subprocess.run(["bash", str(script)], cwd=str(work), env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1800)
    tail = "\n".join(proc.stdout.splitlines()[-150:])
    assert proc.returncode == 0, f"the documented YARN commands failed:\n{tail}"
    steps = _steps(proc.stdout, commands)
    for (command, started, _), following in zip(steps, steps[1:] + [(None, time.time(), [])]):
        print(f"[timing] {following[1] - started:6.1f}s  {command.splitlines()[0][:90]}")

    _, _, packed = _step(steps, "tfspark.pack")
    assert re.search(r"uploaded hdfs://\S+/user/\S+/tfspark/env\.tar\.gz", packed), packed
    assert "wrote tfspark-yarn.conf" in packed
    assert not set(glob.glob(pack_dirs)) - packed_before  # its 1 GB build folder is gone

    submits = [s for s in steps if s[0].startswith("$SUBMIT")]
    assert len(submits) == 4
    for command, _, lines in submits:
        text = "\n".join(t for _, t in lines)
        # the archives are referenced on HDFS, never uploaded by an application
        assert re.search(r"Not copying hdfs://\S+/tfspark/env\.tar\.gz#env", text), command
        assert "Not copying" in text and "spark-jars.zip" in text, command
        uploads = [t for t in text.splitlines() if "Uploading resource" in t]
        assert not [u for u in uploads if "env.tar.gz" in u or "spark-jars" in u], uploads

    _, _, data = _step(steps, "mnist_data_setup.py")
    assert "wrote 1438 train images to mnist/data/train" in data

    started, lines, client = _step(steps, "mnist_spark.py", "input_mode spark")
    assert re.search(r"exported SavedModel: hdfs://\S+/user/\S+/mnist/export/1", client), client
    first_step = next(t for t, line in lines if re.search(r"tfspark: epoch 1/\d+ step ", line))
    print(f"[timing] README YARN client training: {first_step - started:.1f}s from "
          "spark-submit to the first training step", flush=True)

    _, _, logs = _step(steps, "yarn logs")
    assert re.search(r"exported SavedModel: hdfs://\S+/user/\S+/mnist/export/2", logs), logs

    _, _, inference = _step(steps, "mnist_inference.py")
    assert re.search(r"model: hdfs://\S+/mnist/export/2", inference), inference
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", inference).group(1))
    assert accuracy >= 0.90, inference

    _check_packed_environment(cluster, tmp_path)
    return steps


def _check_packed_environment(yarn_cluster, tmp_path) -> None:
    """The NodeManager's unpacked env.tar.gz imports tfspark from inside itself, not from this
    checkout, and has no pyspark of its own."""
    pythons = glob.glob(os.path.join(str(yarn_cluster.base_dir), "nm-local", "**",
                                     "env.tar.gz", "bin", "python"), recursive=True)
    assert pythons, "no unpacked env.tar.gz in the NodeManager's cache"
    env_dir = os.path.realpath(os.path.dirname(os.path.dirname(pythons[0])))
    # YARN's PUBLIC cache: files r-xr-xr-x, folders rwxr-xr-x (set by the NodeManager)
    module = os.path.join(glob.glob(os.path.join(env_dir, "lib", "python*", "site-packages"))[0],
                          "tfspark", "__init__.py")
    assert (os.stat(module).st_mode & 0o7777, os.stat(os.path.dirname(module)).st_mode & 0o7777) \
        == (0o555, 0o755)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    found = subprocess.run(
        [pythons[0], "-c", "import importlib.util, tfspark\nprint(tfspark.__file__)\n"
                           "print(importlib.util.find_spec('pyspark') is None)"],
        cwd=str(tmp_path), env=clean, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, timeout=120)
    assert found.returncode == 0, found.stdout
    module_path, no_pyspark = found.stdout.strip().splitlines()[-2:]
    assert os.path.realpath(module_path).startswith(env_dir + os.sep), found.stdout
    assert no_pyspark == "True", found.stdout

