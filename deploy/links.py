"""nbgitpuller links for a class hub: one click brings course updates to each student.

    python deploy/links.py https://hub.example.edu            # the course
    python deploy/links.py https://hub.example.edu 04         # ... opening chapter 04

The link logs the student in, pulls this repository into ``~/open-models-lab`` with nbgitpuller
(which never overwrites a file the student changed there; nobody edits that copy), and opens
their workspace. The workspace itself is brought up to date from that copy each time their server
starts (deploy/singleuser.py): new chapters are added, and a chapter they changed is kept with the
course's new version beside it (``NN_topic.updated.ipynb``). Servers stop after an idle hour, so
updates show at the next login; Hub Control Panel -> Stop My Server -> Start shows them at once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlencode

REPOSITORY = "https://github.com/open-models-lab/open-models-lab"  # = repository.url in _config.yml
BRANCH = "main"
TARGET = "open-models-lab"  # = deploy/singleuser.py's PULLED_COURSE, inside the student's home
ROOT = Path(__file__).resolve().parent.parent


def nbgitpuller_link(hub_url: str, chapter: str | None = None) -> str:
    """The link that pulls the course and opens the workspace (or one chapter's copy in it)."""
    page = "lab/tree/workspace"
    if chapter:
        matches = sorted((ROOT / "notebooks").glob(f"{chapter}_*.ipynb"))
        if not matches:
            raise ValueError(f"no chapter {chapter!r} in {ROOT / 'notebooks'}")
        page += f"/{matches[0].name}"
    query = urlencode({"repo": REPOSITORY, "branch": BRANCH, "targetPath": TARGET, "urlpath": page}, safe="/")
    return f"{hub_url.rstrip('/')}/hub/user-redirect/git-pull?{query}"


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    print(nbgitpuller_link(*sys.argv[1:]))
