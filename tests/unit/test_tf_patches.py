"""tfspark._strategies.tf_patches: the one place that patches TF/Keras, and its version check."""
from __future__ import annotations

import sys
import types

import pytest

from tfspark._strategies import tf_patches


@pytest.fixture
def fake_tf(monkeypatch):
    monkeypatch.setattr(tf_patches, "_checked", False)

    def with_version(version):
        monkeypatch.setitem(sys.modules, "tensorflow", types.SimpleNamespace(__version__=version))
    return with_version


def test_a_known_tf_version_is_patched_silently(fake_tf, capsys):
    fake_tf(f"{tf_patches.KNOWN_TF_VERSIONS[-1]}.3")
    assert tf_patches.check_tf_version()
    assert capsys.readouterr().err == ""


def test_an_unknown_tf_version_is_said_once(fake_tf, capsys):
    fake_tf("2.99.0")
    assert not tf_patches.check_tf_version()
    assert not tf_patches.check_tf_version()
    err = capsys.readouterr().err
    assert err.count("TensorFlow 2.99.0 is not a version") == 1
    assert f"pin tensorflow=={tf_patches.KNOWN_TF_VERSIONS[-1]}.*" in err


def test_a_method_is_replaced_once_keeping_its_doc(fake_tf):
    fake_tf(f"{tf_patches.KNOWN_TF_VERSIONS[-1]}.0")

    class Model:
        def fit(self, x):
            """TF's doc."""
            return x

    def counting(fit):
        def fit_twice(self, x):
            return fit(self, x) * 2
        return fit_twice

    tf_patches.replace_method(Model, "fit", counting)
    tf_patches.replace_method(Model, "fit", counting)  # a second install changes nothing
    assert Model().fit(3) == 6 and Model.fit.__doc__ == "TF's doc."


def test_modules_are_patched_when_imported_later(tmp_path, monkeypatch):
    (tmp_path / "late_keras.py").write_text("class Model:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    patched = []
    tf_patches.after_import(["late_keras"], lambda module: patched.append(module.__name__))
    assert patched == []
    import late_keras  # noqa: F401 - the import is the test
    assert patched == ["late_keras"]
    sys.modules.pop("late_keras", None)
