"""Both sites' language features: a link to the same page in the other language, and, on the Chinese
site (built from _build/zh/src by course/i18n_build.py), English anchors for translated headings.

- ``oml_language`` ("en" or "zh_CN"): the English site lives at ``_build/html/``, the Chinese one at
  ``_build/html/zh/``; every page gets a link to its twin at the same path in the other site.
- Anchors: ``myst_heading_slug_func = "i18n_site.heading_slug"`` makes ``## 反向传播`` keep the anchor of
  the English ``## Backpropagation``, so links like ``03_cnn.ipynb#2-convolution`` (written once, in
  English, and copied into translations) work in both sites, and the switch link keeps its place.
  The pairs come from ``_i18n/headings.json`` (written with the sources: Chinese -> English title).
- Search (``html_search_language: zh``): Chinese has no spaces, so the index holds every pair of
  neighbouring Han characters and the page's JavaScript splits a query the same way; a page matches
  when it holds all the query's pairs. No dictionary (jieba's is 20 MB and guesses), nothing online.
"""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
# searchtools.js's splitQuery, for Chinese: words as usual, then each Han run as its character pairs.
# (No "<" or ">" in it: it is pasted into a template.)
SPLIT_QUERY_JS = r"""
function splitQuery(query) {
  var terms = [];
  query.split(/[^\p{Letter}\p{Number}_]+/gu).forEach(function (part) {
    part.split(/(\p{Script=Han}+)/u).forEach(function (run) {
      if (!run) return;
      if (!/\p{Script=Han}/u.test(run) || run.length === 1) { terms.push(run); return; }
      for (var i = 0; i !== run.length - 1; i++) terms.push(run.slice(i, i + 2));
    });
  });
  return terms;
}
"""


def han_pairs(text: str) -> list[str]:
    """'反向传播' -> ['反向', '向传', '传播']: what the Chinese search index holds."""
    return [run[i:i + 2] for run in _HAN.findall(text) for i in range(len(run) - 1)]


def _chinese_search():
    from sphinx.search.zh import SearchChinese

    class SearchChinesePairs(SearchChinese):
        js_splitter_code = SPLIT_QUERY_JS

        def split(self, input: str) -> list[str]:
            return super().split(input) + han_pairs(input)

    return SearchChinesePairs

OTHER = {  # our language -> (where the other site's root is, relative to ours; its label; its code)
    "en": ("zh/", "中文", "zh-CN"),
    "zh_CN": ("../", "English", "en"),
}
_STATE: dict = {"pairs": {}, "doc": None, "used": {}}


def heading_slug(title: str) -> str:
    """MyST's default slug of the English title this (translated) heading stands for."""
    from myst_parser.mdit_to_docutils.base import default_slugify

    pairs = _STATE["pairs"].get(_STATE["doc"], [])
    used = _STATE["used"].setdefault(_STATE["doc"], set())
    for index, (chinese, english) in enumerate(pairs):
        if chinese == title and index not in used:  # two equal Chinese titles: take them in order
            used.add(index)
            return default_slugify(english)
    return default_slugify(title)


def _source_read(app, docname, source) -> None:
    _STATE["doc"] = docname
    _STATE["used"].pop(docname, None)


def _load_pairs(app) -> None:
    path = Path(app.srcdir) / "_i18n" / "headings.json"
    _STATE["pairs"] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def switch_link(language: str, pagename: str) -> str:
    """The HTML of the link from ``pagename`` to the same page in the other language."""
    root, label, code = OTHER.get(language, OTHER["en"])
    up = "../" * pagename.count("/")
    href = f"{up}{root}{pagename}.html"
    # both languages give a heading the same anchor, so the section being read carries over
    keep_section = "this.href = this.href.split('#')[0] + location.hash"
    return (f'<p class="oml-language-switch"><a href="{escape(href)}" hreflang="{code}" lang="{code}" '
            f'onclick="{keep_section}">{label}</a></p>\n')


def _add_switch(app, pagename, templatename, context, doctree) -> None:
    if "body" in context and pagename not in ("genindex", "search"):
        context["body"] = switch_link(app.config.oml_language, pagename) + context["body"]


def setup(app):
    app.add_config_value("oml_language", "en", "html")
    app.add_search_language(_chinese_search())
    app.connect("builder-inited", _load_pairs)
    app.connect("source-read", _source_read)
    app.connect("html-page-context", _add_switch)
    # heading_slug follows the document being read: one at a time
    return {"parallel_read_safe": False, "parallel_write_safe": True}
