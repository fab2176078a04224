"""Sphinx fixes for the attnbook website, loaded through ``sphinx.local_extensions`` in ``_config.yml``.

Inline scripts that extensions add after the HTML builder has started (sphinx-thebe's ``const THEBE_JS_URL = ...``,
sphinx-togglebutton's selector) reach each page twice under Sphinx 7.4: once from the extension registry as
``filename=''`` and once from the builder as ``filename=None``, which Sphinx's de-duplication treats as different
files. The second ``const`` declaration is a SyntaxError in every reader's browser console (found by
``tests/test_site.py``). This drops the repeated inline scripts from each page's context, keeping the first.
"""

from __future__ import annotations


def _dedupe_inline_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        filename = getattr(script, "filename", script) or ""
        attributes = tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items()))
        key = (filename, getattr(script, "priority", None), attributes)
        if not filename and key in seen:
            continue
        seen.add(key)
        kept.append(script)
    context["script_files"] = kept


def setup(app):
    # Late priority: after the theme and extensions have put their scripts in the context.
    app.connect("html-page-context", _dedupe_inline_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
