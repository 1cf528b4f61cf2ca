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


def seed_ids_on_the_page() -> list[str]:
    """The seed articles, read from the table at the top of the page: the list lives there, not in a test."""
    text = PAGE.read_text(encoding="utf-8")
    start = text.index("| seed | title |")
    return re.findall(r"^\| (\d{3}) \|", text[start:text.index("\n## ", start)], re.M)


def test_every_seed_article_is_listed():
    ids = seed_ids_on_the_page()
    assert ids and ids == sorted(set(ids)), f"the seed table at the top of {PAGE.name} is empty or unordered"
    if SEEDS.is_dir():  # beside the clone, where the articles are: the table lists exactly those
        on_disk = sorted({p.name[:3] for p in SEEDS.glob("*.txt")})
        assert ids == on_disk, f"{PAGE.name} lists seeds {ids}, the seed folder has {on_disk}"


def test_every_concept_cites_listed_seeds():
    listed = set(seed_ids_on_the_page())
    rows = re.findall(r"^\|[^|\n]+\| ((?:\d{3}(?:, )?)+) \|", PAGE.read_text(encoding="utf-8"), re.M)
    cited = {seed for row in rows for seed in row.split(", ")}
    assert rows and cited <= listed, f"concepts cite seeds not in the table: {sorted(cited - listed)}"


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
