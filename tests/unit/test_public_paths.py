"""Every tfspark name the README and docs tell users to import or call exists there, and
``tfspark.__getattr__`` exposes public modules only."""
from __future__ import annotations

import configparser
import glob
import importlib
import os
import re

import pytest

import tfspark

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def documented_names():
    names = set()
    for path in DOCS:
        text = open(path).read()
        names |= set(re.findall(r"\btfspark(?:\.[A-Za-z_]\w*)+", text))
        for module, imported in re.findall(r"from (tfspark[\w.]*) import ([\w, ]+)", text):
            names |= {f"{module}.{name.split(' as ')[0].strip()}"
                      for name in imported.split(",") if name.strip()}
    return sorted(names)


def resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            value = getattr(value, attribute)
        return value
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("dotted", documented_names())
def test_every_documented_name_resolves(dotted):
    assert resolve(dotted) is not None


def test_the_docs_name_enough_to_mean_something():
    names = documented_names()
    for expected in ("tfspark.TFCluster", "tfspark.predict", "tfspark.data.tfrecord_dataset",
                     "tfspark.tfrecord.write", "tfspark.export.export_saved_model",
                     "tfspark.ml.TFEstimator", "tfspark.compat.tensorflowonspark",
                     "tfspark.backup.BackupDir", "tfspark.session.get_session"):
        assert expected in names


def test_the_package_exposes_public_modules_only():
    assert tfspark.__getattr__("data").__name__ == "tfspark.data"
    for private in ("_driver", "cluster", "node"):  # machinery: imported by its full path
        with pytest.raises(AttributeError):
            tfspark.__getattr__(private)


def test_the_tfspark_pack_command_is_installed():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    scripts = config.get("options.entry_points", "console_scripts")
    assert "tfspark-pack = tfspark.pack:main" in [s.strip() for s in scripts.splitlines()]
    assert callable(resolve("tfspark.pack.main"))
