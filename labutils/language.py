"""Which language the course speaks in this notebook: English, or Chinese for the Chinese edition.

Code cells are the same in both editions, so the language is never in the code. It comes from

1. the running notebook's metadata, ``openmodelslab.language`` (the Chinese edition's notebooks carry
   ``"zh_CN"``; JupyterLab tells the kernel its notebook's path in ``JPY_SESSION_NAME``), else
2. the environment variable ``OML_LANG`` (``make lab LANG=zh`` sets it; the grader sets it from the
   submission's metadata), else
3. English.

Example (in a kernel of ``make lab LANG=zh``, where ``OML_LANG=zh_CN``):
    >>> language()
    'zh'
    >>> normalize("zh_CN.UTF-8")
    'zh'
"""

from __future__ import annotations

import json
import os

LANGUAGE_ENV_VAR = "OML_LANG"
SESSION_ENV_VAR = "JPY_SESSION_NAME"  # set by jupyter_server for each notebook's kernel
SUPPORTED = ("en", "zh")
_cache: dict[tuple[str, float], str | None] = {}


def normalize(code: str | None) -> str | None:
    """'zh_CN', 'zh-CN', 'zh', 'zh_CN.UTF-8' -> 'zh'; 'en_US' -> 'en'; anything else -> None."""
    base = (code or "").split(".")[0].replace("-", "_").split("_")[0].lower()
    return base if base in SUPPORTED else None


def notebook_language(path: str) -> str | None:
    """The language recorded in a notebook file's metadata (None when it records none)."""
    try:
        key = (path, os.path.getmtime(path))
    except OSError:
        return None
    if key not in _cache:
        try:
            with open(path, encoding="utf-8") as file:
                metadata = json.load(file).get("metadata", {})
            _cache[key] = normalize(metadata.get("openmodelslab", {}).get("language"))
        except (OSError, ValueError, AttributeError):
            _cache[key] = None
    return _cache[key]


def language() -> str:
    """'en' or 'zh' for the words the course's tools print in this process."""
    session = os.environ.get(SESSION_ENV_VAR)
    if session and session.endswith(".ipynb"):
        found = notebook_language(session)
        if found:
            return found
    return normalize(os.environ.get(LANGUAGE_ENV_VAR)) or "en"
