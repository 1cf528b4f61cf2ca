"""The glossary as the single source of terms: where a translation leaves out a glossary term.

    python -m course translate glossary   # one line per (cell, term); exit 1 when any is unexplained

For each chapter or page, every term of book/glossary.md whose English appears in a translated
message's English (prose only: code spans, math and link targets removed) must have its Chinese
somewhere in the translation (at first use, with the English in parentheses, is the convention); the
report names the first cell that uses it. A line that is right as it is (the word has another
meaning there, say) is explained in locale/zh_CN/glossary-exceptions.yml, per chapter and term.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from course import i18n
from course.i18n import LANGUAGE, ROOT, Source

GLOSSARY = ROOT / "book" / "glossary.md"
_PARENS = re.compile(r"\s*[(（][^()（）]*[)）]")
_INSIDE_PARENS = re.compile(r"[(（]([^()（）]*)[)）]")
# code, math, link targets, HTML, and quoted titles ("Attention Is All You Need") are not prose
_NOT_PROSE = re.compile(r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\]\([^)]*\)|<[^>]+>|\"[^\"\n]*\"|“[^”\n]*”",
                        re.DOTALL)


@dataclass(frozen=True)
class Term:
    english: tuple[str, ...]  # the name and its alternatives: "backpropagation through time", "BPTT"
    chinese: tuple[str, ...]  # any of these counts: "随时间反向传播"
    row: str  # the glossary's own spelling, for the report

    def used_in(self, text: str) -> bool:
        return any(_pattern(name).search(text) for name in self.english)

    def found_in(self, text: str) -> bool:
        """The Chinese term, or, where the glossary's Chinese keeps the English word ("Sigmoid 函数"),
        that word."""
        keeps_english = any(re.search(r"[A-Za-z]", name) for name in self.chinese)
        return any(name in text for name in self.chinese) or (keeps_english and self.used_in(text))


def _pattern(name: str) -> re.Pattern:
    flags = 0 if any(c.isupper() for c in name) else re.IGNORECASE  # "Adam", "MLP": as written
    return re.compile(rf"(?<![\w-]){re.escape(name)}(?:s|es)?(?![\w-])", flags)


def _names(cell: str, separators: str) -> list[str]:
    main = _PARENS.sub("", cell).strip()
    found = [main, *(part.strip() for part in _INSIDE_PARENS.findall(cell))]
    names = []
    for name in found:
        names += [part.strip() for part in re.split(separators, name) if part.strip()]
    return [name for name in dict.fromkeys(names) if len(name) > 1]


def glossary_terms(path: Path = GLOSSARY) -> list[Term]:
    """The rows of the glossary's table: | English | 中文 | chapter | meaning |."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not line.startswith("|") or set(cells[0]) <= set("-: ") or cells[0] == "English":
            continue
        rows.append((cells[0], cells[1]))
    headwords = {_PARENS.sub("", english).strip().lower() for english, _ in rows}
    terms = []
    for english, chinese in rows:
        main = _PARENS.sub("", english).strip().lower()
        # "(BPTT)", "(filter)" name the same thing; "scale (quantization)" names another term's field
        names = [n for n in _names(english, r",\s*|\s+/\s+")
                 if n.lower() == main or n.lower() not in headwords]
        chinese_names = [_PARENS.sub("", chinese).strip(), *re.split(r"[、/]", _PARENS.sub("", chinese))]
        terms.append(Term(tuple(names), tuple(n.strip() for n in dict.fromkeys(chinese_names) if n.strip()),
                          f"{english} / {chinese}"))
    return terms


@dataclass(frozen=True)
class Missing:
    stem: str
    where: str  # "cell 12" or "line 30"
    term: Term


def missing_terms(source: Source, terms: list[Term], language: str = LANGUAGE) -> list[Missing]:
    path = source.catalog(language)
    if not path.exists():
        return []
    translations = {e.msgid: e.msgstr for e in i18n.load_catalog(path) if e.msgstr and not e.fuzzy}
    translated = [(m, o) for m, o in i18n.source_messages(source) if m in translations]
    chinese = "\n".join(translations[msgid] for msgid, _ in translated)
    found = []
    for term in terms:  # the chapter uses the term: its Chinese must appear (at least at first use)
        first = next((o for m, o in translated if term.used_in(_NOT_PROSE.sub(" ", m))), None)
        english_names_it = any(term.found_in(m) and not term.used_in(m) for m, _ in translated)
        if first and not term.found_in(chinese) and not english_names_it:
            where = ("cell " if source.kind == "notebook" else "line ") + first[0][1]
            found.append(Missing(source.path.stem, where, term))
    return found


def exceptions(language: str = LANGUAGE) -> dict[str, dict[str, str]]:
    """{stem: {glossary English (or "*": every term): why the translation is right without it}}."""
    path = i18n.locale_dir(language) / "glossary-exceptions.yml"
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}


def report(language: str = LANGUAGE) -> tuple[list[str], list[str]]:
    """(unexplained lines, explained lines), one per chapter/page, cell and term."""
    terms, explained_terms = glossary_terms(), exceptions(language)
    open_lines, explained = [], []
    for source in i18n.book_sources():
        if source.path == GLOSSARY:
            continue  # the glossary's rows are the terms themselves
        for item in missing_terms(source, terms, language):
            reasons = explained_terms.get(item.stem, {})
            why = reasons.get(item.term.english[0]) or reasons.get("*")  # "*": the whole page
            line = f"{item.stem} {item.where}: {item.term.row} (no {' / '.join(item.term.chinese)})"
            (explained if why else open_lines).append(line + (f" -- {why}" if why else ""))
    return open_lines, explained


def main(argv: list[str] | None = None) -> int:
    open_lines, explained = report()
    for line in open_lines:
        print(line)
    print(f"{len(open_lines)} glossary term(s) missing from their translation, {len(explained)} explained "
          f"in locale/{LANGUAGE}/glossary-exceptions.yml", file=sys.stderr)
    return 1 if open_lines else 0
