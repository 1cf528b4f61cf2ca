"""The Chinese edition's catalogs (course/i18n.py): messages, `translate update`, drafts."""

import nbformat
import polib
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course import i18n

PAGE = """# Setup (安装)

Some prose
on two lines.

```bash
make setup
```

(a-label)=
## A heading

| English | 中文 |
|---|---|
| loss | 损失 |

:::{note}
A note

with a blank line.
:::
"""


def test_page_segments_rebuild_the_page_and_keep_code_out():
    segments = i18n.page_segments(PAGE)
    assert "".join(s.text for s in segments) == PAGE
    messages = [s.text for s in segments if s.translatable]
    assert messages == ["# Setup (安装)", "Some prose\non two lines.", "## A heading",
                        "| English | 中文 |", "| loss | 损失 |",
                        ":::{note}\nA note\n\nwith a blank line.\n:::"]


def test_every_book_page_is_segmented_without_loss():
    for source in i18n.book_sources():
        if source.kind == "page":
            text = source.path.read_text(encoding="utf-8")
            assert "".join(s.text for s in i18n.page_segments(text)) == text, source.rel


def _fake_book(root, cells):
    (root / "notebooks").mkdir()
    (root / "_toc.yml").write_text("format: jb-book\nroot: notebooks/01_demo\n")
    nbformat.write(new_notebook(cells=cells), root / "notebooks" / "01_demo.ipynb")
    return i18n.book_sources(root)[0]


@pytest.fixture
def book(tmp_path, monkeypatch):
    monkeypatch.setattr(i18n, "ROOT", tmp_path)
    cells = [new_markdown_cell("# Demo\n"), new_code_cell("x = 1"), new_markdown_cell("Same text"),
             new_markdown_cell("The loss goes down as training goes on."), new_markdown_cell("Same text")]
    return _fake_book(tmp_path, cells)


def _translate(path, mapping):
    catalog = polib.pofile(str(path))
    for entry in catalog:
        entry.msgstr = mapping.get(entry.msgid, entry.msgstr)
    catalog.save(str(path))


def _rewrite_cell(source, index, text):
    notebook = nbformat.read(source.path, as_version=4)
    notebook.cells[index].source = text
    nbformat.write(notebook, source.path)


def test_one_message_per_markdown_cell_exact_source_duplicates_shared(book):
    path, changed = i18n.update_catalog(book)
    assert changed and path.name == "01_demo.po"
    catalog = polib.pofile(str(path))
    assert [e.msgid for e in catalog] == ["# Demo\n", "Same text", "The loss goes down as training goes on."]
    assert catalog[1].occurrences == [("notebooks/01_demo.ipynb", "2"), ("notebooks/01_demo.ipynb", "4")]
    assert catalog.metadata["Language"] == "zh_CN"
    assert i18n.update_catalog(book) == (path, False)  # a second run changes nothing


def test_update_keeps_valid_translations_marks_changed_fuzzy_drops_obsolete(book):
    path, _ = i18n.update_catalog(book)
    _translate(path, {"# Demo\n": "# 演示\n", "Same text": "相同的文字",
                      "The loss goes down as training goes on.": "随着训练进行，损失下降。"})
    _rewrite_cell(book, 3, "The loss goes down slowly as training goes on.")  # edited: fuzzy
    _rewrite_cell(book, 0, "# Something else entirely, with many new words\n")  # new: empty
    i18n.update_catalog(book)
    entries = {e.msgid: e for e in polib.pofile(str(path))}
    assert entries["Same text"].msgstr == "相同的文字" and not entries["Same text"].fuzzy
    changed = entries["The loss goes down slowly as training goes on."]
    assert changed.fuzzy and changed.msgstr == "随着训练进行，损失下降。"
    assert changed.previous_msgid == "The loss goes down as training goes on."
    assert entries["# Something else entirely, with many new words\n"].msgstr == ""
    assert "# Demo\n" not in entries and not polib.pofile(str(path)).obsolete_entries()
    i18n.update_catalog(book)  # still fuzzy (with the same previous msgid) until a translator clears it
    again = {e.msgid: e for e in polib.pofile(str(path))}["The loss goes down slowly as training goes on."]
    assert again.fuzzy and again.previous_msgid == "The loss goes down as training goes on."


def test_drafts_fill_only_empty_messages_by_exact_source(book):
    path, _ = i18n.update_catalog(book)
    _translate(path, {"Same text": "已经翻译"})
    drafts = [["Same text", "不应覆盖"], ["# Demo\n", "# 演示\n"], ["# Demo", "不匹配"]]
    assert i18n.fill_from_drafts(path, drafts) == 1
    entries = {e.msgid: e.msgstr for e in polib.pofile(str(path))}
    assert entries == {"# Demo\n": "# 演示\n", "Same text": "已经翻译",
                       "The loss goes down as training goes on.": ""}


def test_a_broken_catalog_says_how_to_fix_it(book):
    path, _ = i18n.update_catalog(book)
    path.write_text('msgid "a"\nmsgstr "b" "c\n', encoding="utf-8")
    with pytest.raises(SystemExit, match="translate update"):
        i18n.update_catalog(book)


def test_every_chapter_and_page_has_a_catalog():
    missing = [source.rel for source in i18n.book_sources() if not source.catalog().exists()]
    assert not missing, f"run `python -m course translate update` (no catalog for {missing})"
