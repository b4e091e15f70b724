"""tfspark.backup on local paths (the HDFS path is exercised by the MNIST resume test)."""
import types

from tfspark.backup import BackupDir


def _ctx(chief):
    return types.SimpleNamespace(is_chief=chief, absolute_path=lambda p: p)


def test_a_local_backup_is_used_in_place_and_never_copied(tmp_path):
    backup = BackupDir(str(tmp_path / "backup"), _ctx(True))
    assert backup.local == str(tmp_path / "backup") and not backup.remote
    (tmp_path / "backup" / "ckpt").write_text("state")
    assert backup.publish() is False  # nothing to copy: TF wrote it where it lives
    backup.clear()
    assert (tmp_path / "backup" / "ckpt").exists()  # Keras deletes its own local backup
