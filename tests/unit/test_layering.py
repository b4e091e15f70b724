"""The package's layering rules, read from every import in tfspark (lazy ones included): the
tree is the architecture only as long as these hold."""
from __future__ import annotations

import ast
import os
from typing import Dict, Set

import pytest

import tfspark

PACKAGE = os.path.dirname(tfspark.__file__)


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _is_module(name: str) -> bool:
    base = os.path.join(os.path.dirname(PACKAGE), *name.split("."))
    return os.path.isfile(base + ".py") or os.path.isfile(os.path.join(base, "__init__.py"))


def imports_of_every_module() -> Dict[str, Set[str]]:
    """module -> the tfspark modules it imports anywhere in its code."""
    found = {}
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            module = _module_name(path)
            package = module if name == "__init__.py" else module.rpartition(".")[0]
            targets = set()
            for node in ast.walk(ast.parse(open(path).read())):
                if isinstance(node, ast.Import):
                    targets |= {a.name for a in node.names if a.name.startswith("tfspark")}
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        parts = package.split(".")
                        base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base
                                                                                   else []))
                    if not base.startswith("tfspark"):
                        continue
                    for alias in node.names:
                        full = f"{base}.{alias.name}"
                        targets.add(full if _is_module(full) else base)
            found[module] = targets
    return found


IMPORTS = imports_of_every_module()


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations(importer: str, forbidden: tuple, allowed: tuple = ()) -> list:
    return sorted(f"{m} imports {t}" for m, targets in IMPORTS.items() if _inside(m, importer)
                  for t in targets if any(_inside(t, f) for f in forbidden) and t not in allowed)


@pytest.mark.parametrize("importer, forbidden, allowed", [
    ("tfspark._node", ("tfspark._driver",), ()),  # a node never reaches the driver's code
    ("tfspark._feed", ("tfspark._driver", "tfspark._node"), ()),  # the feed knows no launcher
    ("tfspark._strategies", ("tfspark._driver", "tfspark._node", "tfspark._feed"), ()),
    ("tfspark._tfrecord", ("tfspark._node", "tfspark._feed", "tfspark._strategies"), ()),
    # files know no node; on a driver, fs.defaultFS is the Spark application's (its backend's)
    ("tfspark.fs", ("tfspark._driver", "tfspark._node", "tfspark._feed", "tfspark._strategies",
                    "tfspark._tfrecord"), ("tfspark._driver.spark_backend",)),
])
def test_private_packages_import_only_what_their_layer_allows(importer, forbidden, allowed):
    assert _violations(importer, forbidden, allowed) == []


@pytest.mark.parametrize("module", ["tfspark.roles", "tfspark.errors", "tfspark.constants",
                                    "tfspark.protowire", "tfspark._node.processes"])
def test_pure_modules_import_nothing_of_tfspark(module):
    assert IMPORTS[module] == set()


def test_nothing_but_the_harness_imports_tfspark_testing():
    assert _violations("tfspark", ("tfspark.testing",)) == [
        v for v in _violations("tfspark", ("tfspark.testing",)) if v.startswith("tfspark.testing")]


def test_the_rules_see_imports():
    """The reader finds lazy and relative imports (else every rule above holds vacuously)."""
    assert "tfspark._driver.attempt" in IMPORTS["tfspark._driver.cluster"]
    assert "tfspark._node.task" in IMPORTS["tfspark._driver.attempt"]
    assert any(t.startswith("tfspark._feed") for t in IMPORTS["tfspark._node.process"])


def test_a_nodes_task_and_process_start_light():
    """A node's Spark task (a Python worker) and its process import neither TensorFlow nor
    pyspark.sql nor Arrow before they need them (the process imports TF while nodes meet)."""
    import subprocess
    import sys
    code = ("import sys, tfspark._node.task, tfspark._node.process\n"
            "print(sorted(m for m in ('tensorflow', 'pyspark.sql', 'pyarrow', 'numpy') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
