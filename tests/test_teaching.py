"""The teaching guide and the syllabus name only exercises and chapters that exist."""

import re

import yaml

from labutils.exercises import chapter_exercises
from tests.notebook_runs import NOTEBOOKS, ROOT

SYLLABUS = ROOT / "book" / "syllabus.md"


def _exercise_ids() -> dict[str, set[str]]:
    return {nb.stem[:2]: {e.id for e in chapter_exercises(nb)} for nb in NOTEBOOKS}


def _named(text: str) -> set[str]:
    ids = set(re.findall(r"\b(\d\d\.\d+)\b", text))
    for chapter, low, high in re.findall(r"\b(\d\d)\.(\d+) to \1\.(\d+)\b", text):
        ids |= {f"{chapter}.{k}" for k in range(int(low), int(high) + 1)}
    return ids


def test_the_syllabus_assigns_only_exercises_that_exist():
    text = SYLLABUS.read_text(encoding="utf-8")
    known = _exercise_ids()
    # a chapter not in this clone yet (being written) is not checked
    missing = sorted(i for i in _named(text) if i[:2] in known and i not in known[i[:2]])
    assert not missing, f"book/syllabus.md assigns exercises the chapters do not have: {missing}"


def test_the_syllabus_has_ten_weeks_and_every_chapter():
    text = SYLLABUS.read_text(encoding="utf-8")
    weeks = re.findall(r"^\| (\d+) \|", text, re.MULTILINE)
    assert weeks == [str(k) for k in range(1, 11)]
    for notebook in NOTEBOOKS:
        week = re.search(rf"^\| \d+ \|.*\b{notebook.stem[:2]} [A-Z]", text, re.MULTILINE)
        assert week, f"{notebook.stem} has no week in book/syllabus.md"


def test_the_teaching_pages_are_in_the_book():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert "book/teaching" in files and "book/syllabus" in files
    guide = (ROOT / "book" / "teaching.md").read_text(encoding="utf-8")
    for step in ("make student", "make lab", "make grade SUBMISSIONS=", "gradebook.csv", "feedback/",
                 "make progress", "reveal("):
        assert step in guide, f"the teaching guide does not explain `{step}`"
