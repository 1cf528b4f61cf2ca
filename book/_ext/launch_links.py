"""Launch buttons of the chapter pages: Colab opens the committed notebook, Binder the learner's copy.

sphinx-book-theme makes both buttons from ``launch_buttons`` and ``repository`` in _config.yml:
Colab opens ``notebooks/NN_topic.ipynb`` of the repository's branch on GitHub (its first code cell
installs the course there, see labutils.colab). On Binder the image holds a learner's workspace
(binder/postBuild), so the Binder button opens the chapter's copy in ``workspace/`` instead of the
course's source notebook. tests/test_binder.py checks both links for every chapter.
"""

from __future__ import annotations

SOURCE, WORKSPACE = "urlpath=lab/tree/notebooks/", "urlpath=lab/tree/workspace/"


def binder_url(url: str) -> str:
    """The theme's Binder link, opening the workspace copy of the same chapter."""
    return url.replace(SOURCE, WORKSPACE, 1)


def retarget_binder(app, pagename, templatename, context, doctree) -> None:
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            for button in group.get("buttons", []):
                if button.get("text") == "Binder":
                    button["url"] = binder_url(button["url"])


def setup(app):
    app.connect("html-page-context", retarget_binder, priority=510)  # after the theme's (501)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
