"""tfspark.export on local paths: numbered versions, chief-only publishing, latest_version."""
from __future__ import annotations

import os
import types

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfspark import export, fs  # noqa: E402


@pytest.fixture(scope="module")
def model():
    import tensorflow as tf
    m = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    m.compile(optimizer="sgd", loss="mse")
    return m


def _ctx(chief: bool):
    return types.SimpleNamespace(is_chief=chief, absolute_path=lambda p: p)


def test_versions_count_up_from_one_and_ignore_other_names(tmp_path, model):
    export_dir = str(tmp_path / "models")
    assert export.versions(export_dir) == [] and export.next_version(export_dir) == 1
    first = export.export_saved_model(model, export_dir)
    assert first == os.path.join(export_dir, "1")
    os.makedirs(os.path.join(export_dir, ".7._tmp-abc"))  # a leftover temporary
    os.makedirs(os.path.join(export_dir, "notes"))
    (tmp_path / "models" / "9").write_text("a file, not a version")
    second = export.export_saved_model(model, export_dir)
    assert second == os.path.join(export_dir, "2")
    assert export.versions(export_dir) == [1, 2]
    assert export.latest_version(export_dir) == second
    assert os.path.exists(os.path.join(second, "saved_model.pb"))


def test_next_version_follows_the_highest_not_the_count(tmp_path, model):
    export_dir = tmp_path / "models"
    (export_dir / "5").mkdir(parents=True)
    assert export.export_saved_model(model, str(export_dir)).endswith(os.sep + "6")


def test_exported_model_loads_and_predicts_the_same(tmp_path, model):
    import tensorflow as tf
    path = export.export_saved_model(model, "file://" + str(tmp_path / "m"))
    assert path == f"file://{tmp_path}/m/1"
    x = np.ones((4, 3), "float32")
    loaded = tf.keras.models.load_model(export.local_copy(path))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)


def test_non_chief_writes_nothing_and_returns_none(tmp_path, model):
    export_dir = str(tmp_path / "models")
    assert export.export_saved_model(model, export_dir, ctx=_ctx(chief=False)) is None
    assert not os.path.exists(export_dir)
    assert export.export_saved_model(model, export_dir, ctx=_ctx(chief=True)).endswith("1")


def test_a_taken_version_number_is_skipped(tmp_path, model, monkeypatch):
    export_dir = str(tmp_path / "models")
    real = export.next_version
    calls = []

    def racing(path):  # another exporter publishes version 1 right after we picked it
        number = real(path)
        if not calls:
            fs.mkdirs(fs.join(path, str(number)))  # path is a URL (file:/...)
        calls.append(number)
        return number

    monkeypatch.setattr(export, "next_version", racing)
    assert export.export_saved_model(model, export_dir) == os.path.join(export_dir, "2")
    assert calls == [1, 2]


def test_latest_version_names_the_directory_when_empty(tmp_path):
    with pytest.raises(export.ExportError, match=str(tmp_path / "nothing")):
        export.latest_version(str(tmp_path / "nothing"))


def test_publish_dir_replaces_the_copy(tmp_path):
    local, remote = tmp_path / "local", tmp_path / "remote"
    local.mkdir()
    (local / "a").write_text("1")
    export.publish_dir(str(local), str(remote))
    (local / "a").write_text("2")
    (local / "b").write_text("3")
    export.publish_dir(str(local), str(remote))
    assert sorted(os.listdir(remote)) == ["a", "b"] and (remote / "a").read_text() == "2"
    assert export.local_mirror(str(remote)) == str(remote)
