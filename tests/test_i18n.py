"""The Chinese edition's catalogs (course/i18n.py): messages, `translate update`, drafts."""

import nbformat
import polib
import pytest
import yaml
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


def test_every_chapter_and_page_of_the_edition_has_a_catalog():
    """Pages outside the edition may lack one (`translate status` says so; the site shows them in
    English); one in the edition must have it."""
    missing = [source.rel for source in i18n_build.edition() if not source.catalog().exists()]
    assert not missing, f"run `python -m course translate update` (no catalog for {missing})"


# --- the edition: complete, current, code identical (course/i18n_build.py) ---------------------

from course import i18n_build  # noqa: E402


def test_the_edition_is_complete_and_current():
    """Fails when an English cell of a chapter in the edition changed without its translation,
    naming the file and cell; `translate update` marks it, the translator fixes it."""
    problems = i18n_build.check_edition()
    assert not problems, "the Chinese edition (locale/zh_CN/site.yml) has problems:\n" + "\n".join(problems)


@pytest.mark.parametrize("source", [s for s in i18n_build.edition() if s.kind == "notebook"],
                         ids=lambda s: s.path.stem)
def test_code_cells_are_byte_identical_to_the_english(source):
    english = nbformat.read(source.path, as_version=4)
    chinese = i18n_build.generate_notebook(source, True).content
    code = [c for c in english.cells if c.cell_type == "code"]
    assert [nbformat.writes(new_notebook(cells=[c])) for c in code] == [
        nbformat.writes(new_notebook(cells=[c])) for c in chinese.cells if c.cell_type == "code"]
    assert [c.source for c in chinese.cells if c.cell_type == "markdown"] != [
        c.source for c in english.cells if c.cell_type == "markdown"]  # and the text is Chinese
    assert chinese.metadata["openmodelslab"]["language"] == "zh_CN"
    assert i18n_build.code_differences(english, chinese) == []


def test_a_code_difference_is_named():
    english = new_notebook(cells=[new_markdown_cell("# T"), new_code_cell("x = 1  # a comment")])
    tampered = nbformat.reads(nbformat.writes(english), as_version=4)
    tampered.cells[1].source = "x = 1  # 注释"
    assert i18n_build.code_differences(english, tampered) == [
        "cell 1: code cell differs (source, outputs or metadata)"]


@pytest.fixture
def edition_book(book, tmp_path):
    """The fake book's chapter, fully translated and listed in the edition."""
    (tmp_path / "locale" / "zh_CN").mkdir(parents=True, exist_ok=True)
    (tmp_path / "locale" / "zh_CN" / "site.yml").write_text("edition: [01_demo]\n", encoding="utf-8")
    path, _ = i18n.update_catalog(book)
    _translate(path, {"# Demo\n": "# 演示\n", "Same text": "相同的文字",
                      "The loss goes down as training goes on.": "随着训练进行，损失下降。"})
    return book


def test_ci_names_the_cell_whose_english_changed(edition_book):
    assert i18n_build.check_edition() == []
    _rewrite_cell(edition_book, 3, "The loss goes down, slowly, as training goes on.")
    stale = i18n_build.check_edition()
    assert len(stale) == 1 and "notebooks/01_demo.ipynb cell 3" in stale[0] and "translate update" in stale[0]
    i18n.update_catalog(edition_book)
    fuzzy = i18n_build.check_edition()
    assert len(fuzzy) == 1 and "cell 3" in fuzzy[0] and "fuzzy" in fuzzy[0]
    _rewrite_cell(edition_book, 0, "# A brand-new title that shares no words with the old one\n")
    i18n.update_catalog(edition_book)
    assert any("cell 0" in p and "untranslated" in p for p in i18n_build.check_edition())


def test_a_translation_that_drops_a_heading_is_refused(edition_book):
    _translate(edition_book.catalog(), {"# Demo\n": "演示\n"})
    assert "headings [1] (levels), the translation none" in " ".join(i18n_build.check_edition())


def test_outside_the_edition_a_chapter_is_published_in_english_with_a_note(book):
    made = i18n_build.generate_notebook(book, translated=False)
    note = made.content.cells[1]
    assert "尚未完成" in note.source and "0/3" in note.source and i18n_build.NOTE_TAG in note.metadata.tags
    assert [c.source for i, c in enumerate(made.content.cells) if i != 1] == [
        c.source for c in nbformat.read(book.path, as_version=4).cells]


def test_translated_headings_keep_the_english_anchors():
    english = "## 2. The chain rule (链式法则)\n\ntext `x`\n\n### `backward()` by hand\n"
    chinese = "## 2. 链式法则\n\n文字 `x`\n\n### 手写 `backward()`\n"
    pairs = i18n_build.heading_pairs(english, chinese)
    assert pairs == [["2. 链式法则", "2. The chain rule (链式法则)"],
                     ["手写 backward()", "backward() by hand"]]
    import importlib.util

    spec = importlib.util.spec_from_file_location("i18n_site", i18n.ROOT / "book" / "_ext" / "i18n_site.py")
    site = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(site)
    site._STATE.update(pairs={"notebooks/01": pairs}, doc="notebooks/01", used={})
    assert site.heading_slug("2. 链式法则") == "2-the-chain-rule-链式法则"  # = the English page's anchor
    assert site.heading_slug("手写 backward()") == "backward-by-hand"
    assert site.heading_slug("别的标题") == "别的标题"
    assert 'href="../../notebooks/01.html"' in site.switch_link("zh_CN", "notebooks/01")
    assert 'href="../zh/notebooks/01.html"' in site.switch_link("en", "notebooks/01")
    assert "location.hash" in site.switch_link("en", "notebooks/01")  # the section read carries over


def test_a_translated_page_is_rebuilt_from_its_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(i18n, "ROOT", tmp_path)
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/page\n")
    (tmp_path / "book" / "page.md").write_text(PAGE, encoding="utf-8")
    source = i18n.book_sources()[0]
    path, _ = i18n.update_catalog(source)
    catalog = polib.pofile(str(path))
    for entry in catalog:
        entry.msgstr = entry.msgid.replace("A note", "一条注释").replace("Some prose\non two lines.",
                                                                     "一段文字。")
    catalog.save(str(path))
    text = i18n_build.generate_page(source, True).content
    assert "一段文字。\n\n```bash\nmake setup\n```\n\n(a-label)=\n## A heading" in text
    assert ":::{note}\n一条注释\n\nwith a blank line.\n:::\n" in text
    untranslated = i18n_build.generate_page(source, False).content
    assert untranslated.startswith("# Setup (安装)\n\n:::{note}\n本页的中文翻译尚未完成")


# --- the glossary report (course/i18n_glossary.py) ---------------------------------------------

from course import i18n_glossary  # noqa: E402


def test_glossary_terms_and_their_alternatives():
    terms = {t.english[0]: t for t in i18n_glossary.glossary_terms()}
    assert terms["backpropagation through time"].english == ("backpropagation through time", "BPTT")
    assert terms["scale"].english == ("scale",)  # "(quantization)" is another term, not a synonym
    assert terms["Apple MPS"].chinese[0] == "Apple MPS"
    backpropagation = terms["backpropagation"]
    assert backpropagation.used_in("we run backpropagation.") and not backpropagation.used_in("backprop-free")


def test_glossary_report_names_the_chapter_cell_and_term(book):
    path, _ = i18n.update_catalog(book)
    _translate(path, {"The loss goes down as training goes on.": "随着训练进行，它下降。",
                      "Same text": "相同"})
    terms = [i18n_glossary.Term(("loss",), ("损失",), "loss / 损失"),
             i18n_glossary.Term(("training",), ("训练",), "training / 训练")]
    missing = i18n_glossary.missing_terms(book, terms)
    assert [(m.stem, m.where, m.term.row) for m in missing] == [("01_demo", "cell 3", "loss / 损失")]


def test_glossary_report_of_the_edition_is_empty_or_explained():
    open_lines, _ = i18n_glossary.report()
    edition = {s.path.stem for s in i18n_build.edition()}
    lines = [line for line in open_lines if line.split()[0] in edition]
    assert not lines, ("glossary terms missing from a translation (translate them, or explain the line in "
                       "locale/zh_CN/glossary-exceptions.yml):\n" + "\n".join(lines))


def test_glossary_explanations_name_real_terms_and_chapters():
    terms = {t.english[0] for t in i18n_glossary.glossary_terms()}
    stems = {s.path.stem for s in i18n.book_sources()}
    for stem, reasons in i18n_glossary.exceptions().items():
        assert stem in stems, f"glossary-exceptions.yml: {stem!r} is not a chapter or page"
        unknown = set(reasons) - terms - {"*"}
        assert not unknown, f"glossary-exceptions.yml, {stem}: {unknown} are not book/glossary.md terms"
        assert all(isinstance(why, str) and why.strip() for why in reasons.values())


def test_the_chinese_table_of_contents_marks_pages_still_in_english():
    chapter = next(s for s in i18n.book_sources() if s.kind == "notebook")
    toc = yaml.safe_load(i18n_build._toc(i18n_build.site_config(), [i18n_build.generate(chapter, False)]))
    captions = [part["caption"] for part in toc["parts"]]
    assert captions[:3] == ["入门", "章节", "参考"]
    entries = {e["file"]: e for part in toc["parts"] for e in part["chapters"]}
    english = entries[f"notebooks/{chapter.path.stem}"]
    assert english["title"].endswith("（英文）") and english["title"].startswith(chapter.path.stem[:2])
    assert sum("title" in e for e in entries.values()) == 1
