""".gitignore lists only what the course (or a learner following it) creates."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_ignored_name_is_something_the_course_makes():
    entries = [line.strip().strip("/") for line in (ROOT / ".gitignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    listing = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False)
    if listing.returncode == 0:
        tracked = listing.stdout.splitlines()
    else:  # not a git checkout (a zip download): every file outside what .gitignore covers
        skip = (".venv", "_build", ".git", "node_modules")
        tracked = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                   if p.is_file() and not any(part in skip for part in p.relative_to(ROOT).parts)]
    texts = []
    for name in tracked:
        path = ROOT / name
        text_file = path.suffix in (".py", ".md", ".toml", ".yml", ".cfg", "") and path.is_file()
        if name != ".gitignore" and text_file:
            texts.append(path.read_text(encoding="utf-8", errors="ignore"))
    corpus = "\n".join(texts)
    stale = []
    for entry in entries:
        if "*" in entry:
            continue
        name = entry.rsplit("/", 1)[-1]
        if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", corpus):
            stale.append(entry)
    assert not stale, f".gitignore lists names nothing in the course creates or mentions: {stale}"
