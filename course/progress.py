"""``make progress``: which exercises of a workspace pass, fail, or were never tried.

Prints the table and rewrites the workspace's ``progress.html`` (the same page
Lab shows; every ``check()`` refreshes it too).

Usage: ``python -m course progress [--workspace DIR]``
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from labutils.paths import course_root
from labutils.progress import MANIFEST, WORKSPACE_ENV_VAR, progress_text, write_progress_page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, default=None,
                        help=f"default: ${WORKSPACE_ENV_VAR} or workspace/ in the course folder")
    args = parser.parse_args(argv)
    workspace = args.workspace or Path(os.environ.get(WORKSPACE_ENV_VAR) or course_root() / "workspace")
    if not (workspace / MANIFEST).is_file():
        print(f"{workspace} is not a workspace yet: `make lab` creates it", file=sys.stderr)
        return 2
    print(progress_text(workspace))
    print(f"\npage: {write_progress_page(workspace)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
