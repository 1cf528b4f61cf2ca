"""Translation catalogs of the Chinese edition: one gettext ``.po`` file per chapter and book page.

    python -m course translate update            # create/refresh every .po from the English sources
    python -m course translate fill DRAFTS.json  # fill empty messages from [[english, chinese], ...]
    python -m course translate status            # messages per file: translated / fuzzy / untranslated

A chapter's messages are its markdown cells (msgid = ``cell.source`` exactly as nbformat reads
``notebooks/<stem>.ipynb``); a book page's messages are its blocks (see ``page_segments``).
Code is never a message: the Chinese notebooks copy it from the English ones (course/i18n_build.py).
See locale/README.md for the translators' side of this contract.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import polib
import yaml

ROOT = Path(__file__).resolve().parent.parent
LANGUAGE = "zh_CN"
# A changed English message inherits the old translation (marked fuzzy) only when it is this similar
FUZZY_RATIO = 0.6
_FENCE = re.compile(r"^(`{3,}|~{3,}|:{3,})(.*)$")
_LABEL = re.compile(r"^\(\S+\)=$")
_TABLE_RULE = re.compile(r"^\|[\s:|-]+\|$")


def locale_dir(language: str = LANGUAGE) -> Path:
    return ROOT / "locale" / language


@dataclass(frozen=True)
class Source:
    """One English source file of the book and the catalog that translates it."""

    path: Path  # notebooks/<stem>.ipynb or book/<page>.md
    kind: str  # "notebook" or "page"

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    def catalog(self, language: str = LANGUAGE) -> Path:
        folder = "notebooks" if self.kind == "notebook" else "book"
        return locale_dir(language) / folder / (self.path.stem + ".po")


def book_sources(root: Path | None = None) -> list[Source]:
    """Every chapter and book page listed in _toc.yml that exists, in the book's order (one listed
    but not yet written is skipped here: the book's own build reports it)."""
    root = root or ROOT
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]] + [
        entry["file"] for part in toc.get("parts", []) for entry in part.get("chapters", [])
    ]
    found = []
    for name in files:
        if name.startswith("notebooks/"):
            found.append(Source(root / f"{name}.ipynb", "notebook"))
        else:
            found.append(Source(root / f"{name}.md", "page"))
    return [source for source in found if source.path.exists()]


# --- segmentation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    text: str
    translatable: bool


def _fence_end(lines: list[str], start: int) -> int:
    """Index just past the fence that opens at lines[start] (a closing fence of the same kind)."""
    marker = _FENCE.match(lines[start]).group(1)
    for index in range(start + 1, len(lines)):
        stripped = lines[index].rstrip("\n").strip()
        if stripped and set(stripped) == {marker[0]} and len(stripped) >= len(marker):
            return index + 1
    return len(lines)


def _is_message(block: str) -> bool:
    """Prose or a directive with text is a message; code, label targets and includes are not."""
    first = block.split("\n", 1)[0].strip()
    fence = _FENCE.match(first)
    if fence:
        info = fence.group(2).strip()
        if not info.startswith("{") or info.startswith(("{include}", "{tableofcontents}")):
            return info == "mermaid"  # a diagram's labels are prose; other plain fences are code
        return True
    return not (_LABEL.match(first) or first.startswith("<!--") or _TABLE_RULE.match(first))


def page_segments(text: str) -> list[Segment]:
    """Split a MyST page into blocks; ``"".join(s.text for s in segments) == text``.

    A block is a run of non-blank lines; a fenced block (```, ~~~, :::) stays whole, blank lines
    included; each row of a table is its own block, so one glossary row changes one message.
    Separators (newlines, blank lines) and non-messages (code, ``(label)=``) are kept verbatim.
    """
    lines = text.splitlines(keepends=True)
    segments: list[Segment] = []
    index = 0

    def keep(chunk: str) -> None:
        if segments and not segments[-1].translatable:
            segments[-1] = Segment(segments[-1].text + chunk, False)
        else:
            segments.append(Segment(chunk, False))

    def block(chunk: str) -> None:
        body = chunk.rstrip("\n")
        if body and _is_message(body):
            segments.append(Segment(body, True))
            keep(chunk[len(body):])
        else:
            keep(chunk)

    while index < len(lines):
        line = lines[index]
        if not line.strip():
            keep(line)
            index += 1
        elif _FENCE.match(line.rstrip("\n")):
            end = _fence_end(lines, index)
            block("".join(lines[index:end]))
            index = end
        elif line.startswith("|") or _LABEL.match(line.strip()):
            block(line)  # a table row, or a label target that a heading follows directly
            index += 1
        else:
            end = index
            while end < len(lines) and lines[end].strip() and not lines[end].startswith("|") \
                    and not (end > index and _FENCE.match(lines[end].rstrip("\n"))) \
                    and not _LABEL.match(lines[end].strip()):
                end += 1
            block("".join(lines[index:end]))
            index = end
    return segments


def source_messages(source: Source) -> list[tuple[str, list[tuple[str, str]]]]:
    """(msgid, occurrences) in order of first appearance; duplicates share one message."""
    found: dict[str, list[tuple[str, str]]] = {}
    if source.kind == "notebook":
        notebook = nbformat.read(source.path, as_version=4)
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type == "markdown" and cell.source.strip():
                found.setdefault(cell.source, []).append((source.rel, str(index)))  # cell index
    else:
        text = source.path.read_text(encoding="utf-8")
        line = 1
        for segment in page_segments(text):
            if segment.translatable:
                found.setdefault(segment.text, []).append((source.rel, str(line)))
            line += segment.text.count("\n")
    return list(found.items())


# --- catalogs -------------------------------------------------------------------------------


def _new_catalog(source: Source, language: str) -> polib.POFile:
    catalog = polib.POFile(wrapwidth=0)
    catalog.metadata = {
        "Project-Id-Version": "open-models-lab",
        "Language": language,
        "MIME-Version": "1.0",
        "Content-Type": "text/plain; charset=UTF-8",
        "Content-Transfer-Encoding": "8bit",
        "X-Source": source.rel,
    }
    return catalog


def load_catalog(path: Path) -> polib.POFile:
    try:
        return polib.pofile(str(path), wrapwidth=0)
    except (OSError, ValueError) as error:  # polib raises OSError for a syntax error
        raise SystemExit(f"{path}: cannot be read as a .po file ({error}); fix its syntax "
                         "(msgfmt --check-format shows where) or delete it and run "
                         "`python -m course translate update`") from None


def merge(old: polib.POFile | None, messages, fresh: polib.POFile) -> polib.POFile:
    """Messages in source order; exact matches keep their translation and flags, a changed
    message inherits its closest former translation as fuzzy (previous msgid kept), the rest
    start empty; messages no longer in the source are dropped."""
    previous = {entry.msgid: entry for entry in (old or []) if not entry.obsolete and entry.msgid}
    wanted = {msgid for msgid, _ in messages}
    orphans = [entry for msgid, entry in previous.items() if msgid not in wanted and entry.msgstr]
    for msgid, occurrences in messages:
        entry = polib.POEntry(msgid=msgid, msgstr="", occurrences=occurrences)
        if msgid in previous:
            kept = previous[msgid]
            entry.msgstr, entry.flags = kept.msgstr, list(kept.flags)
            entry.previous_msgid = kept.previous_msgid if "fuzzy" in kept.flags else None
            entry.tcomment = kept.tcomment
        else:
            closest = _closest(msgid, orphans)
            if closest is not None:
                entry.msgstr, entry.flags = closest.msgstr, ["fuzzy"]
                entry.previous_msgid = closest.previous_msgid or closest.msgid
                orphans.remove(closest)
        fresh.append(entry)
    return fresh


def _closest(msgid: str, candidates: list[polib.POEntry]) -> polib.POEntry | None:
    best, best_ratio = None, FUZZY_RATIO
    for entry in candidates:
        matcher = difflib.SequenceMatcher(None, msgid, entry.msgid, autojunk=False)
        if matcher.real_quick_ratio() < best_ratio or matcher.quick_ratio() < best_ratio:
            continue
        ratio = matcher.ratio()
        if ratio >= best_ratio:
            best, best_ratio = entry, ratio
    return best


def update_catalog(source: Source, language: str = LANGUAGE) -> tuple[Path, bool]:
    """Write ``source``'s catalog from the English source; returns (path, changed)."""
    path = source.catalog(language)
    old = load_catalog(path) if path.exists() else None
    catalog = merge(old, source_messages(source), _new_catalog(source, language))
    if old is not None:
        catalog.metadata = {**old.metadata, "X-Source": source.rel, "Language": language}
    text = str(catalog)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".po.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)  # a translator's editor never sees a half-written file
    return path, True


def fill_from_drafts(catalog_path: Path, pairs: list[list[str]]) -> int:
    """Fill untranslated messages whose msgid equals a draft's English exactly; returns how many."""
    catalog = load_catalog(catalog_path)
    drafts = {english: chinese for english, chinese in pairs if chinese}
    filled = 0
    for entry in catalog:
        if not entry.msgstr and entry.msgid in drafts:
            entry.msgstr = drafts[entry.msgid]
            filled += 1
    if filled:
        catalog.save(str(catalog_path))
    return filled


def counts(catalog: polib.POFile) -> dict[str, int]:
    live = [entry for entry in catalog if not entry.obsolete]
    fuzzy = sum("fuzzy" in entry.flags for entry in live)
    untranslated = sum(not entry.msgstr for entry in live)
    return {"messages": len(live), "translated": len(live) - fuzzy - untranslated,
            "fuzzy": fuzzy, "untranslated": untranslated}


# --- command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course translate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("update", help="create/refresh every .po file from the English sources")
    fill = commands.add_parser("fill", help="fill empty messages from [[english, chinese], ...] drafts")
    fill.add_argument("drafts", nargs="+", type=Path, help="<stem>.json files (stem = catalog name)")
    commands.add_parser("status", help="translated / fuzzy / untranslated messages per file")
    for sub in ("build", "check", "glossary"):  # the edition's own commands (course/i18n_build.py)
        commands.add_parser(sub, help=_LATER[sub], add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "update":
        for source in book_sources():
            path, changed = update_catalog(source)
            state = counts(load_catalog(path))
            print(f"{'updated' if changed else 'current'}: {path.relative_to(ROOT)} "
                  f"({state['translated']}/{state['messages']} translated, {state['fuzzy']} fuzzy)")
        return 0
    if args.command == "fill":
        by_stem = {source.path.stem: source.catalog() for source in book_sources()}
        for drafts in args.drafts:
            if drafts.stem not in by_stem or not by_stem[drafts.stem].exists():
                print(f"{drafts}: no catalog for {drafts.stem!r}; run `python -m course translate "
                      "update` first, and name drafts after a chapter or page", file=sys.stderr)
                return 1
            pairs = json.loads(drafts.read_text(encoding="utf-8"))
            print(f"{drafts.name}: {fill_from_drafts(by_stem[drafts.stem], pairs)} filled")
        return 0
    if args.command == "status":
        for source in book_sources():
            path = source.catalog()
            if not path.exists():
                print(f"{source.rel}: no catalog (run `python -m course translate update`)")
                continue
            state = counts(load_catalog(path))
            print(f"{path.relative_to(ROOT)}: {state['translated']}/{state['messages']} translated, "
                  f"{state['fuzzy']} fuzzy, {state['untranslated']} untranslated")
        return 0
    from course import i18n_build  # noqa: PLC0415 (the edition's tools: imported when asked for)

    return i18n_build.main([args.command, *rest])


_LATER = {
    "build": "write the Chinese book's sources (_build/zh/src): the edition in Chinese, the rest in English",
    "check": "fail on an untranslated or fuzzy message, or code that differs, in the edition",
    "glossary": "glossary terms used in an English cell whose Chinese term its translation lacks",
}
