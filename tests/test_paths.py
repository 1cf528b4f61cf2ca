"""Course paths resolve from the repository root, whatever the working directory."""

from pathlib import Path

import pytest

from labutils import paths

ROOT = Path(__file__).resolve().parent.parent


def test_course_root_is_the_clone_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.ROOT_ENV_VAR, raising=False)
    for where in (ROOT, ROOT / "notebooks", tmp_path):
        monkeypatch.chdir(where)
        assert paths.course_root() == ROOT


def test_course_root_can_be_named(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(tmp_path))
    assert paths.course_root() == tmp_path.resolve()


def test_output_dir_is_per_run_when_the_variable_is_set(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.OUTPUT_ENV_VAR, str(tmp_path / "run1"))
    folder = paths.output_dir("06-bert")
    assert folder == tmp_path / "run1" / "06-bert" and folder.is_dir()
    assert paths.shared_output_dir("06-bert") == ROOT / "_build" / "models" / "06-bert"


def test_output_dir_defaults_to_the_shared_folder(monkeypatch):
    monkeypatch.delenv(paths.OUTPUT_ENV_VAR, raising=False)
    assert paths.output_dir("test-paths-default") == ROOT / "_build" / "models" / "test-paths-default"
    paths.output_dir("test-paths-default").rmdir()


def test_write_atomically_replaces_a_folder_whole(tmp_path):
    target = tmp_path / "model"
    paths.write_atomically(target, lambda d: (d / "old.txt").write_text("old"))
    paths.write_atomically(target, lambda d: (d / "new.txt").write_text("new"))
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left behind


def test_a_failed_write_leaves_the_old_folder(tmp_path):
    target = tmp_path / "model"
    paths.write_atomically(target, lambda d: (d / "old.txt").write_text("old"))

    def broken(folder):
        (folder / "half.bin").write_bytes(b"12")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        paths.write_atomically(target, broken)
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
