"""The seed map (book/seed_map.md) links only to sections that exist, and covers all five seeds."""

import re
from pathlib import Path

import pytest
from myst_parser.mdit_to_docutils.base import default_slugify

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "book" / "seed_map.md"
SEEDS = ROOT.parent / "shared" / "seeds"
LINK = re.compile(r"\]\((\.\./notebooks/[\w.]+\.ipynb|[\w]+\.md)(?:#([^)]+))?\)")


def heading_anchors(notebook_py: Path) -> set[str]:
    """The anchors MyST gives the ## and ### headings of a chapter (inline math is not part of a slug)."""
    anchors = set()
    for line in notebook_py.read_text(encoding="utf-8").splitlines():
        match = re.match(r"# #{2,3} (.*)", line)
        if match:
            anchors.add(default_slugify(re.sub(r"\$[^$]*\$", "", match.group(1))))
    return anchors


def links() -> list[tuple[str, str | None]]:
    return LINK.findall(PAGE.read_text(encoding="utf-8"))


def test_the_page_is_in_the_book():
    assert "book/seed_map" in (ROOT / "_toc.yml").read_text(encoding="utf-8")


def test_every_seed_article_is_listed():
    text = PAGE.read_text(encoding="utf-8")
    ids = sorted({p.name[:3] for p in SEEDS.glob("*.txt")}) if SEEDS.is_dir() else ["000", "001", "002", "003", "004"]
    missing = [i for i in ids if f"| {i} |" not in text]
    assert not missing, f"seed articles missing from the table at the top of {PAGE.name}: {missing}"


def test_the_page_links_to_every_chapter():
    linked = {Path(target).stem for target, _ in links() if target.startswith("../notebooks/")}
    chapters = {p.stem for p in (ROOT / "notebooks").glob("0*.py") if not p.stem.startswith("00")}
    assert chapters <= linked, f"chapters the seed map never links to: {sorted(chapters - linked)}"


@pytest.mark.parametrize("target,anchor", sorted(set(links())), ids=lambda v: v or "-")
def test_each_linked_section_exists(target, anchor):
    path = (PAGE.parent / target).resolve()
    if path.suffix == ".ipynb":
        source = path.with_suffix(".py")
        assert source.exists(), f"{PAGE.name} links to {target}, which does not exist"
        assert anchor, f"{PAGE.name}: link to {target} without a section anchor"
        assert anchor in heading_anchors(source), (
            f"{PAGE.name} links to section #{anchor} of {source.name}, which has no such heading any more: "
            f"update the link (headings: {sorted(heading_anchors(source))})")
    else:
        assert path.exists(), f"{PAGE.name} links to {target}, which does not exist"
