"""`nnspec html`: the playground's view of one spec as a single static HTML file.

The page's own assets (static/index.html, app.css, app.js) with the stylesheet and the
script inlined, and the analysis, every row's explanation, the table JSON and the diagram
embedded as JSON: it opens from disk with no server and no network.
"""

from __future__ import annotations

import json

from .analyze import Options, analyze, explain_all, language

CSS_TAG = '<link rel="stylesheet" href="/static/app.css">'
JS_TAG = '<script src="/static/app.js"></script>'
DATA_TAG = '<script id="nnspec-data" type="application/json">null</script>'
# no network at all: inline script and style only, images from data: URLs
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src data: blob:; base-uri 'none'; form-action 'none'")


def _script_json(doc) -> str:
    """JSON that cannot end its <script> element early (no '<', '>', '&' as such)."""
    from ..report import all_digits
    with all_digits():
        text = json.dumps(doc, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _inline(code: str) -> str:
    return code.replace("</", "<\\/")  # app.js/app.css hold no "</", but never let one end the element


def page(text: str, file: str, options: Options = Options()) -> tuple[str, dict]:
    """(html, analysis): the whole page for spec `text`."""
    from importlib import resources
    from .. import __version__
    from ..report import to_json
    from ..spec import Spec
    from .analyze import parse_and_expand
    static = resources.files("nnspec.web").joinpath("static")
    index = static.joinpath("index.html").read_text("utf-8")
    css = static.joinpath("app.css").read_text("utf-8")
    js = static.joinpath("app.js").read_text("utf-8")
    result = analyze(text, file, options)
    table_json = None
    if result["ok"]:
        _, graph, _ = parse_and_expand(text, file, options)
        table_json = to_json(Spec(graph).analyze(options.batch, options.dtype)) + "\n"
    from ..report import COLUMNS
    from ..analysis import DTYPE_BYTES
    data = {
        "state": {"mode": "static", "file": file, "saving": False, "dtypes": list(DTYPE_BYTES),
                  "columns": list(COLUMNS), "language": language(),
                  "options": {"batch": options.batch, "dtype": options.dtype,
                              "depth": options.depth, "args": dict(options.args)}},
        "text": text, "analysis": result, "table_json": table_json,
        "explanations": explain_all(text, file, options) if result["ok"] else {},
        # no date: the same spec gives the same file (it may be committed next to the spec)
        "generated": f"made by nnspec html {__version__}",
    }
    for tag in (CSS_TAG, JS_TAG, DATA_TAG):
        if tag not in index:
            raise RuntimeError(f"static/index.html lost its {tag!r}")  # the test of this module fails first
    out = (index
           .replace("<head>\n", f'<head>\n<meta http-equiv="Content-Security-Policy" content="{CSP}">\n', 1)
           .replace(CSS_TAG, f"<style>\n{_inline(css)}</style>")
           .replace(DATA_TAG, f'<script id="nnspec-data" type="application/json">{_script_json(data)}</script>')
           .replace(JS_TAG, f"<script>\n{_inline(js)}</script>"))
    title = (result["network"] or file) + " · nnspec"
    out = out.replace("<title>nnspec</title>", f"<title>{_escape(title)}</title>", 1)
    return out, result


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
