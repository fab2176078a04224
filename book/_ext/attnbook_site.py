"""Sphinx fixes for the attnbook website, loaded through ``sphinx.local_extensions`` in ``_config.yml``.

Inline scripts that extensions add after the HTML builder has started (sphinx-thebe's ``const THEBE_JS_URL = ...``,
sphinx-togglebutton's selector) reach each page twice under Sphinx 7.4: once from the extension registry as
``filename=''`` and once from the builder as ``filename=None``, which Sphinx's de-duplication treats as different
files. The second ``const`` declaration is a SyntaxError in every reader's browser console (found by
``tests/test_site.py``). This drops the repeated inline scripts from each page's context, keeping the first.
"""

from __future__ import annotations

import re


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


def _coalesce_streams(outputs):
    """Merge consecutive stream outputs of one name and apply carriage returns, as a terminal would show them.

    myst-nb's own ``coalesce_streams`` (``nb_merge_streams``) puts a newline between the merged pieces, so a tqdm bar,
    which writes ``"\\r<bar>"`` at every refresh, still shows one line per refresh. Here pieces are concatenated as
    they arrived, and on each line only the text after its last carriage return survives: the bar's final state.
    """
    merged, last = [], None
    for output in outputs or []:
        if output.get("output_type") == "stream" and last is not None and last.get("name") == output.get("name"):
            last["text"] += output["text"]
            continue
        merged.append(output)
        last = output if output.get("output_type") == "stream" else None
    for output in merged:
        if output.get("output_type") == "stream":
            lines = output["text"].split("\n")
            output["text"] = "\n".join(_RGX_CR.sub("", line) for line in lines)
    return merged


_RGX_CR = re.compile(r".*\r(?=[^\r]*\S)")     # everything up to the last \r that is followed by text


def setup(app):
    # Used by myst-nb's renderer when nb_merge_streams is on (see _config.yml).
    import myst_nb.core.render as render

    render.coalesce_streams = _coalesce_streams
    # Late priority: after the theme and extensions have put their scripts in the context.
    app.connect("html-page-context", _dedupe_inline_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
