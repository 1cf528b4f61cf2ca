"""``python -m course COMMAND [ARGS]``: one entry point for the course tooling.

Each command is a ``main(argv) -> int`` function in a module of this package.
To add one, add a line to ``COMMANDS``.
"""

from __future__ import annotations

import importlib
import sys

# command: ("module:function", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("course.notebooks:check_main", "pairs in sync? saved outputs from one complete full run?"),
    "sync": ("course.notebooks:sync_main", "sync each .py with its .ipynb, refusing to lose edits"),
    "execute": ("course.notebooks:execute_main", "full run of chapters, outputs saved into notebooks/"),
    "status": ("course.notebooks:status_main", "write the book's execution-status table"),
    "student": ("course.student:main", "write the student edition (solutions replaced by stubs)"),
    "bench": ("course.bench:main", "timings that matter to a learner on a laptop CPU"),
    "lab": ("course.workspace:lab_main", "fill or update your workspace, then open JupyterLab on it"),
    "workspace": ("course.workspace:main", "fill or update your workspace (one notebook per chapter)"),
    "progress": ("course.progress:main", "which exercises of your workspace pass, fail, were never tried"),
    "grade": ("course.grade:main", "score a folder of submissions: gradebook.csv + feedback per student"),
    "translate": ("course.i18n:main", "the Chinese edition: update/fill/status of locale/zh_CN/*.po"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "usage: python -m course COMMAND [ARGS]  (COMMAND --help for its options)\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, function = COMMANDS[name][0].split(":")
    return getattr(importlib.import_module(module), function)(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
