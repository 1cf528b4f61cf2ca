"""The Chinese edition in the classroom: check()'s words, the workspace, the student edition, grading."""

import json
import re

import nbformat
import pytest

from course import i18n_build
from course.notebooks import FAIL_MARKS
from course.student import student_notebook
from course.workspace import lab_command, prepare
from labutils import language as lang
from labutils.check import check
from labutils.exercises import chapter_exercises
from tests.notebook_runs import PASSED

EDITION = [s for s in i18n_build.edition() if s.kind == "notebook"]


@pytest.fixture(autouse=True)
def lenient(monkeypatch):
    for name in ("OML_STRICT_CHECKS", "OML_CHECK_LOG", lang.LANGUAGE_ENV_VAR, lang.SESSION_ENV_VAR):
        monkeypatch.delenv(name, raising=False)


def test_check_speaks_chinese_when_the_environment_says_so(capsys, monkeypatch):
    monkeypatch.setenv(lang.LANGUAGE_ENV_VAR, "zh_CN")
    check("t.1", 0.5, expected=0.5)
    check("t.2", 0.7, expected=0.5, hint="减半")
    out = capsys.readouterr().out
    assert "[PASS] 练习 t.1 通过。" in out
    assert "[FAIL] 练习 t.2 未通过：got 0.7, expected 0.5" in out and "   提示：减半" in out
    assert any(mark in out for mark in FAIL_MARKS)  # saved outputs still parse: the marks are kept
    assert PASSED.findall(out) == ["t.1"]


def test_check_follows_the_notebook_it_runs_in(capsys, monkeypatch, tmp_path):
    notebook = tmp_path / "03_cnn.ipynb"
    nbformat.write(nbformat.v4.new_notebook(metadata={"openmodelslab": {"language": "zh_CN"}}), notebook)
    monkeypatch.setenv(lang.SESSION_ENV_VAR, str(notebook))  # what jupyter_server gives the kernel
    monkeypatch.setenv(lang.LANGUAGE_ENV_VAR, "en")
    check("t.3", 1, expected=1)
    assert "[PASS] 练习 t.3 通过。" in capsys.readouterr().out
    nbformat.write(nbformat.v4.new_notebook(), notebook)  # an English notebook: the environment decides
    check("t.4", 1, expected=1)
    assert "[PASS] Exercise t.4 passed." in capsys.readouterr().out


def test_english_stays_the_default(capsys):
    check("t.5", 1, expected=1)
    assert capsys.readouterr().out.strip() == "[PASS] Exercise t.5 passed."
    assert [lang.normalize(x) for x in ("zh-CN", "zh_CN.UTF-8", "en_US", "C.UTF-8", None)] == [
        "zh", "zh", "en", None, None]


@pytest.mark.parametrize("source", EDITION, ids=lambda s: s.path.stem)
def test_student_edition_of_a_chinese_chapter_has_the_same_exercises_and_code(source):
    english = nbformat.read(source.path, as_version=4)
    chinese = i18n_build.generate_notebook(source, True).content
    ids = [e.id for e in chapter_exercises(english)]
    assert ids and [e.id for e in chapter_exercises(chinese)] == ids
    code = [[c.source for c in student_notebook(nb, source.path.name).cells if c.cell_type == "code"]
            for nb in (english, chinese)]
    assert code[0] == code[1]


def test_the_chinese_workspace(tmp_path):
    workspace = tmp_path / "workspace-zh"
    messages = prepare(workspace, language="zh_CN")
    assert len(messages) == 10 and all(m.startswith("added ") for m in messages)
    manifest = json.loads((workspace / ".oml" / "workspace.json").read_text())
    assert manifest["language"] == "zh_CN"
    for source in EDITION:
        notebook = nbformat.read(workspace / source.path.name, as_version=4)
        assert notebook.metadata["openmodelslab"]["language"] == "zh_CN"
        assert "这是你的第" in notebook.cells[0].source and "永远不会覆盖" in notebook.cells[0].source
        english = nbformat.read(source.path, as_version=4)
        assert [e.id for e in chapter_exercises(notebook)] == [e.id for e in chapter_exercises(english)]
    assert prepare(workspace) == []  # a second run keeps the workspace's language and changes nothing
    edited = workspace / EDITION[0].path.name
    edited.write_text(edited.read_text(encoding="utf-8").replace("这是你的第", "我的笔记：这是你的第"),
                      encoding="utf-8")
    assert prepare(workspace, language="en")  # switching language never overwrites an edited notebook
    assert "我的笔记" in edited.read_text(encoding="utf-8")
    assert (workspace / (EDITION[0].path.stem + ".updated.ipynb")).exists()


def test_the_chinese_lab_command(tmp_path):
    _, env = lab_command(tmp_path, language="zh_CN")
    assert env[lang.LANGUAGE_ENV_VAR] == "zh_CN"
    first = env["JUPYTER_CONFIG_PATH"].split(":")[0]
    overrides = json.loads(open(f"{first}/labconfig/default_setting_overrides.json").read())
    assert overrides["@jupyterlab/translation-extension:plugin"] == {"locale": "zh_CN"}
    _, english = lab_command(tmp_path)
    assert lang.LANGUAGE_ENV_VAR not in english or english[lang.LANGUAGE_ENV_VAR] != "zh_CN"
    assert not re.search("locale", english["JUPYTER_CONFIG_PATH"])


def test_a_chinese_submission_is_graded_like_an_english_one(tmp_path):
    """The gradebook of a chapter of the edition: a student's Chinese notebook, solutions filled in."""
    from course.grade import grade_class
    from tests.test_grade import _rows, _solutions, _submission

    source = EDITION[0]
    chinese = i18n_build.generate_notebook(source, True).content
    english = nbformat.read(source.path, as_version=4)
    submission = _submission(chinese, _solutions(english))
    assert submission.metadata["openmodelslab"]["language"] == "zh_CN"
    (tmp_path / "class" / "li").mkdir(parents=True)
    nbformat.write(submission, tmp_path / "class" / "li" / source.path.name)
    grade_class(tmp_path / "class", tmp_path / "grades", source.path.stem[:2], cell_timeout=60,
                notebook_timeout=300)
    row = _rows(tmp_path / "grades")["li"]
    exercises = chapter_exercises(english)
    assert row["status"] == "graded" and int(row["total"]) == sum(e.points for e in exercises), row
    assert all(int(row[e.id]) == e.points for e in exercises)
