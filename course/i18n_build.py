"""The Chinese edition, generated: English notebooks and pages + locale/zh_CN/*.po -> Chinese sources.

    python -m course translate build [--out DIR]   # the Chinese book's sources (default _build/zh/src)
    python -m course translate check               # CI's check of the edition (see check_edition)

Only markdown changes: every code cell (source, tags, metadata, saved outputs) and the notebook's
metadata are the English notebook's, copied; the generated notebook only gains
``metadata.openmodelslab.language``. A chapter or page in the edition (locale/zh_CN/site.yml) must
have a complete, current catalog; one outside it is published in English with a note saying so.
Everything is written under _build/ (git-ignored, never edited by a learner) and rewritten freely.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

from course import i18n
from course.i18n import LANGUAGE, ROOT, Source

BUILD_DIR = ROOT / "_build" / "zh"
HEADINGS_FILE = "_i18n/headings.json"  # per page: Chinese heading -> English heading (anchors)
META_KEY = "openmodelslab"
# the site's assets and extensions, and the generated tables a page includes (book/benchmark.md):
# shared with English
LINKED = ("book/_static", "book/_ext", "book/_generated")
NOTE_TAG = "i18n-note"
FONT_DIR = "_i18n/static"  # the course's CJK font as a web font, and the CSS that uses it
FONT_FAMILY = "OML WenQuanYi Micro Hei"
# Only CJK characters take the course's font; Latin text keeps the theme's fonts.
FONT_CSS = """/* The course's CJK font (package paperang-p2-fonts-cjk, see labutils/plot.py), served here. */
@font-face {{
  font-family: "{family}";
  src: url("fonts/wqy-microhei.ttf") format("truetype");
  unicode-range: U+2E80-2FFF, U+3000-303F, U+3040-30FF, U+3100-31FF, U+3400-4DBF, U+4E00-9FFF,
    U+F900-FAFF, U+FE30-FE4F, U+FF00-FFEF;
  font-display: swap;
}}
html {{
  --pst-font-family-base: "{family}", var(--pst-font-family-base-system);
  --pst-font-family-heading: "{family}", var(--pst-font-family-base-system);
}}
"""
ENGLISH_NOTE = (":::{{note}}\n本{what}的中文翻译尚未完成（已译 {done}/{total} 段），下面是英文原文。"
                "完成后它会出现在中文版里：见 `locale/README.md`。\n:::")


def site_config(language: str = LANGUAGE) -> dict:
    return yaml.safe_load((i18n.locale_dir(language) / "site.yml").read_text(encoding="utf-8"))


def edition(language: str = LANGUAGE) -> list[Source]:
    """The chapters and pages published in ``language`` (site.yml's ``edition``), in book order."""
    names = set(site_config(language).get("edition") or [])
    sources = i18n.book_sources()
    unknown = names - {s.path.stem for s in sources}
    if unknown:
        raise SystemExit(f"locale/{language}/site.yml lists {sorted(unknown)} under edition:, which "
                         "are not chapters or pages of _toc.yml: use a stem like 00_setup_and_tour")
    return [s for s in sources if s.path.stem in names]


# --- what a catalog still lacks -------------------------------------------------------------


def _where(source: Source, occurrences, msgid: str) -> str:
    first = next((line for line in msgid.splitlines() if line.strip()), "")[:60]
    cells = ", ".join(("cell " if source.kind == "notebook" else "line ") + line for _, line in occurrences)
    return f"{source.rel} {cells} ({first!r})"


def catalog_problems(source: Source, language: str = LANGUAGE) -> list[str]:
    """Each message of ``source`` that has no current translation, naming its cell or line."""
    path = source.catalog(language)
    if not path.exists():
        return [f"{source.rel}: no {path.relative_to(ROOT)}; run `python -m course translate update`"]
    entries = {entry.msgid: entry for entry in i18n.load_catalog(path) if not entry.obsolete}
    problems = []
    for msgid, occurrences in i18n.source_messages(source):
        entry = entries.get(msgid)
        where = _where(source, occurrences, msgid)
        if entry is None:
            problems.append(f"{where}: the English changed since the last `python -m course translate "
                            "update`; run it, then translate the message it marks")
        elif not entry.msgstr:
            problems.append(f"{where}: untranslated")
        elif entry.fuzzy:
            problems.append(f"{where}: fuzzy (the English changed): update the translation, then delete "
                            "its `#, fuzzy` flag and `#|` lines")
        else:
            problems += [f"{where}: {p}" for p in structure_problems(msgid, entry.msgstr)]
    return problems


def structure_problems(english: str, chinese: str) -> list[str]:
    """A translation must keep the headings (levels and count: anchors map by position)."""
    ours, theirs = [level for level, _ in headings(english)], [level for level, _ in headings(chinese)]
    if ours != theirs:
        return [f"the English has headings {ours or 'none'} (levels), the translation {theirs or 'none'}"]
    return []


# --- headings and anchors -------------------------------------------------------------------


def _markdown_parser():
    from myst_parser.config.main import MdParserConfig  # noqa: PLC0415 (imports Sphinx: on demand)
    from myst_parser.mdit_to_docutils.base import DocutilsRenderer  # noqa: PLC0415
    from myst_parser.parsers.mdit import create_md_parser  # noqa: PLC0415

    book = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    extensions = set(book.get("parse", {}).get("myst_enable_extensions", []))
    return create_md_parser(MdParserConfig(enable_extensions=extensions), DocutilsRenderer)


_PARSER = []


def headings(markdown: str) -> list[tuple[int, str]]:
    """(level, title) of each heading, the title as MyST slugs it (text and code spans only)."""
    if not _PARSER:
        _PARSER.append(_markdown_parser())
    tokens = _PARSER[0].parse(markdown)
    found = []
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            children = tokens[index + 1].children or []
            title = "".join(c.content for c in children if c.type in ("text", "code_inline"))
            found.append((int(token.tag[1:]), title))
    return found


def heading_pairs(english: str, chinese: str) -> list[list[str]]:
    """[[Chinese title, English title], ...] so the Chinese page keeps the English anchors."""
    return [[zh, en] for (_, en), (_, zh) in zip(headings(english), headings(chinese)) if zh != en]


# --- generation -----------------------------------------------------------------------------


@dataclass
class Generated:
    source: Source
    translated: bool  # False: the English text under a note (not in the edition)
    content: object  # a NotebookNode or the page's text
    headings: list[list[str]] = field(default_factory=list)


def _translations(source: Source, language: str) -> dict[str, str]:
    path = source.catalog(language)
    if not path.exists():
        return {}
    return {e.msgid: e.msgstr for e in i18n.load_catalog(path) if e.msgstr and not e.fuzzy}


def _note(source: Source, language: str) -> str:
    messages = i18n.source_messages(source)
    done = sum(msgid in _translations(source, language) for msgid, _ in messages)
    return ENGLISH_NOTE.format(what="章" if source.kind == "notebook" else "页", done=done,
                               total=len(messages))


def generate_notebook(source: Source, translated: bool, language: str = LANGUAGE) -> Generated:
    english = nbformat.read(source.path, as_version=4)
    notebook = copy.deepcopy(english)
    notebook.metadata.setdefault(META_KEY, {})["language"] = language if translated else "en"
    pairs: list[list[str]] = []
    if translated:
        table = _translations(source, language)
        for cell in notebook.cells:
            if cell.cell_type == "markdown" and cell.source.strip():
                chinese = table[cell.source]  # check_edition has made sure it exists
                pairs += heading_pairs(cell.source, chinese)
                cell.source = chinese
    else:
        note = nbformat.v4.new_markdown_cell(_note(source, language), id="oml-i18n-note",
                                             metadata={"tags": [NOTE_TAG]})
        notebook.cells.insert(1, note)  # below the title cell, which stays the page's title
    return Generated(source, translated, notebook, pairs)


def generate_page(source: Source, translated: bool, language: str = LANGUAGE) -> Generated:
    segments = i18n.page_segments(source.path.read_text(encoding="utf-8"))
    if not translated:
        texts = [s.text for s in segments]
        at = 2 if segments and segments[0].text.startswith("#") else 0  # after the title and its newlines
        texts.insert(at, _note(source, language) + "\n\n")
        return Generated(source, False, "".join(texts))
    table = _translations(source, language)
    pieces, pairs = [], []
    for segment in segments:
        if segment.translatable:
            pieces.append(table[segment.text])
            pairs += heading_pairs(segment.text, table[segment.text])
        else:
            pieces.append(segment.text)
    return Generated(source, True, "".join(pieces), pairs)


def generate(source: Source, translated: bool, language: str = LANGUAGE) -> Generated:
    make = generate_notebook if source.kind == "notebook" else generate_page
    return make(source, translated, language)


def code_differences(english, generated) -> list[str]:
    """Where a generated notebook's code (or anything but its markdown) differs from the English."""
    theirs = [c for c in generated.cells if NOTE_TAG not in c.metadata.get("tags", [])]
    if len(theirs) != len(english.cells):
        return [f"{len(english.cells)} cells in English, {len(theirs)} in the translation"]
    problems = []
    for index, (a, b) in enumerate(zip(english.cells, theirs)):
        if a.cell_type != b.cell_type:
            problems.append(f"cell {index}: {a.cell_type} in English, {b.cell_type} translated")
        elif a.cell_type == "markdown":
            if a.metadata != b.metadata or a.get("id") != b.get("id"):
                problems.append(f"cell {index}: markdown cell's metadata or id differs")
        elif json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            problems.append(f"cell {index}: {a.cell_type} cell differs (source, outputs or metadata)")
    metadata = {k: v for k, v in generated.metadata.items() if k != META_KEY}
    if metadata != {k: v for k, v in english.metadata.items() if k != META_KEY}:
        problems.append("notebook metadata differs")
    return problems


def _write_if_changed(path: Path, data: bytes) -> None:
    """Unchanged files keep their time stamps, so Sphinx rebuilds only the pages that changed."""
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two test workers may write at once
    temporary.write_bytes(data)
    temporary.replace(path)


def _title(made: Generated) -> str | None:
    if made.source.kind == "notebook":
        text = next((c.source for c in made.content.cells if c.cell_type == "markdown"), "")
    else:
        text = made.content
    found = headings(text)
    return found[0][1] if found else None


def _toc(config: dict, written: list[Generated]) -> str:
    """The English table of contents with Chinese captions; a page still in English says so."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    captions = config.get("captions") or {}
    english = {Path(m.source.rel).with_suffix("").as_posix(): _title(m) for m in written if not m.translated}
    for part in toc.get("parts", []):
        part["caption"] = captions.get(part.get("caption"), part.get("caption"))
        for entry in part.get("chapters", []):
            if english.get(entry.get("file")):
                entry["title"] = f"{english[entry['file']]}（英文）"
    return yaml.safe_dump(toc, allow_unicode=True, sort_keys=False)


def _book_config(config: dict, language: str) -> str:
    book = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    book["title"] = config.get("title", book.get("title"))
    sphinx = book.setdefault("sphinx", {}).setdefault("config", {})
    sphinx.update(config.get("sphinx") or {})
    sphinx["oml_language"] = language  # book/_ext/i18n_site.py: switch link, anchors, CJK font
    sphinx["myst_heading_slug_func"] = "i18n_site.heading_slug"
    sphinx["html_static_path"] = [*sphinx.get("html_static_path", []), FONT_DIR]
    sphinx["html_css_files"] = [*sphinx.get("html_css_files", []), "oml-cjk.css"]
    extensions = book["sphinx"].setdefault("local_extensions", {})
    extensions["i18n_site"] = "book/_ext"
    return yaml.safe_dump(book, allow_unicode=True, sort_keys=False)


def _write_one(source: Source, member: bool, out: Path, strict: bool, language: str) -> Generated:
    translated = member and (strict or not catalog_problems(source, language))
    made = generate(source, translated, language)
    data = nbformat.writes(made.content) + "\n" if source.kind == "notebook" else made.content
    _write_if_changed(out / source.rel, data.encode("utf-8"))
    return made


def write_notebooks(out: Path = BUILD_DIR / "src", language: str = LANGUAGE) -> list[Path]:
    """The Chinese edition's chapter notebooks (the learner's workspace starts from these).

    Not strict: a chapter of the edition whose translation is behind its English (CI fails on it)
    comes in English with the note, so a learner is never given text that no longer matches its code.
    """
    members = {s.path for s in edition(language)}
    chapters = [s for s in i18n.book_sources() if s.kind == "notebook"]
    return [out / _write_one(s, s.path in members, out, False, language).source.rel for s in chapters]


def write_sources(out: Path = BUILD_DIR / "src", language: str = LANGUAGE,
                  strict: bool = True) -> list[Generated]:
    """The Chinese book's sources under ``out``: _config.yml, _toc.yml, notebooks/, book/.

    ``strict``: refuse (SystemExit naming each problem) when the edition is incomplete or its code
    differs; otherwise a chapter in that state is published in English like one outside the edition.
    """
    out = Path(out)
    members = {s.path for s in edition(language)}
    problems = check_edition(language) if strict else []
    if problems:
        raise SystemExit("the Chinese edition is not complete:\n  " + "\n  ".join(problems))
    config = site_config(language)
    written = [_write_one(source, source.path in members, out, strict, language)
               for source in i18n.book_sources()]
    headings_map = {Path(m.source.rel).with_suffix("").as_posix(): m.headings for m in written}
    _write_if_changed(out / HEADINGS_FILE, json.dumps(headings_map, ensure_ascii=False, indent=1).encode())
    _write_if_changed(out / "_config.yml", _book_config(config, language).encode("utf-8"))
    _write_if_changed(out / "_toc.yml", _toc(config, written).encode("utf-8"))
    for shared in LINKED:
        link = out / shared
        if not link.is_symlink():
            shutil.rmtree(link, ignore_errors=True)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(ROOT / shared, target_is_directory=True)
    _write_font(out / FONT_DIR)
    from course.notebooks import status_table  # noqa: PLC0415

    status = out / "_build" / f"status.{os.getpid()}.tmp"
    status_table(status)
    status.replace(out / "_build" / "status.md")  # book/status.md includes ../_build/status.md
    return written


def _write_font(static: Path) -> None:
    """The first face of the course's .ttc as a .ttf (what every browser reads), and its CSS."""
    import importlib.util  # noqa: PLC0415

    from labutils.plot import CJK_FONT_FILE, CJK_FONT_MODULE  # noqa: PLC0415

    spec = importlib.util.find_spec(CJK_FONT_MODULE)
    if spec is None:
        raise SystemExit("the Chinese site needs the course's CJK font: run `make setup` "
                         "(or `pip install paperang-p2-fonts-cjk==0.1.0`)")
    collection = Path(next(iter(spec.submodule_search_locations))) / CJK_FONT_FILE
    target = static / "fonts" / "wqy-microhei.ttf"
    if not target.exists() or target.stat().st_mtime < collection.stat().st_mtime:
        from fontTools.ttLib import TTCollection  # noqa: PLC0415 (matplotlib's dependency)

        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        TTCollection(str(collection)).fonts[0].save(str(temporary))
        temporary.replace(target)
    _write_if_changed(static / "oml-cjk.css", FONT_CSS.format(family=FONT_FAMILY).encode("utf-8"))


# --- the edition's check --------------------------------------------------------------------


def check_edition(language: str = LANGUAGE) -> list[str]:
    """Every problem of the edition: a missing, untranslated or fuzzy message, a heading lost,
    or a generated notebook whose code differs from the English one."""
    problems = []
    for source in edition(language):
        found = catalog_problems(source, language)
        problems += found
        if not found and source.kind == "notebook":
            english = nbformat.read(source.path, as_version=4)
            generated = generate_notebook(source, True, language).content
            problems += [f"{source.rel}: {p}" for p in code_differences(english, generated)]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course translate")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write the Chinese book's sources")
    build.add_argument("--out", type=Path, default=BUILD_DIR / "src")
    commands.add_parser("check", help="fail on any problem of the Chinese edition")
    commands.add_parser("glossary", help="glossary terms a translation lacks")
    args = parser.parse_args(argv)
    if args.command == "glossary":
        from course.i18n_glossary import main as glossary_main  # noqa: PLC0415

        return glossary_main([])
    problems = check_edition()
    members = [s.path.stem for s in edition()]
    if problems:
        print("the Chinese edition has problems:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    if args.command == "build":
        written = write_sources(args.out)
        print(f"wrote {args.out}: {sum(g.translated for g in written)} of {len(written)} chapters and "
              f"pages in Chinese ({', '.join(members) or 'none yet'}), the others in English with a note")
        return 0
    complete = [s.path.stem for s in i18n.book_sources()
                if s.path.stem not in members and not catalog_problems(s)]
    print(f"the Chinese edition is consistent: {len(members)} chapters and pages "
          f"({', '.join(members) or 'none yet'})")
    if complete:
        print(f"complete but not yet in the edition (add to locale/zh_CN/site.yml): {', '.join(complete)}")
    return 0
