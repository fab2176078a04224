"""Sphinx fixes for the attnbook website, loaded through ``sphinx.local_extensions``
in ``_config.yml``.

Inline scripts that extensions add after the HTML builder has started (sphinx-thebe's
``const THEBE_JS_URL = ...``, sphinx-togglebutton's selector) reach each page twice
under Sphinx 7.4: once from the extension registry as ``filename=''`` and once from
the builder as ``filename=None``, which Sphinx's de-duplication treats as different
files. The second ``const`` declaration is a SyntaxError in every reader's browser
console (found by ``tests/test_site.py``). This drops the repeated inline scripts
from each page's context, keeping the first.

It also makes the build log say what the build does
    (:func:`_report_and_quiet_kernels`): a line per notebook
executed and per slow cell, and none of the kernels' own chatter.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

# A cell that runs longer than this (seconds) gets its own line in the build log.
SLOW_CELL_S = 20


def _dedupe_inline_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        filename = getattr(script, "filename", script) or ""
        attributes = tuple(
            sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())
        )
        key = (filename, getattr(script, "priority", None), attributes)
        if not filename and key in seen:
            continue
        seen.add(key)
        kept.append(script)
    context["script_files"] = kept


def _coalesce_streams(outputs):
    """Merge consecutive stream outputs of one name and apply carriage returns, as a
    terminal would show them.

    myst-nb's own ``coalesce_streams`` (``nb_merge_streams``) puts a newline between
    the merged pieces, so a tqdm bar, which writes ``"\\r<bar>"`` at every refresh,
    still shows one line per refresh. Here pieces are concatenated as
    they arrived, and on each line only the text after its last carriage return
        survives: the bar's final state.
    """
    merged, last = [], None
    for output in outputs or []:
        if (
            output.get("output_type") == "stream"
            and last is not None
            and last.get("name") == output.get("name")
        ):
            last["text"] += output["text"]
            continue
        merged.append(output)
        last = output if output.get("output_type") == "stream" else None
    for output in merged:
        if output.get("output_type") == "stream":
            lines = output["text"].split("\n")
            output["text"] = "\n".join(_RGX_CR.sub("", line) for line in lines)
    return merged


_RGX_CR = re.compile(
    r".*\r(?=[^\r]*\S)"
)  # everything up to the last \r that is followed by text


def _report_and_quiet_kernels(app):
    """Keep the kernels' own output out of the build log, and report the notebooks'
    progress in it instead.

    Without this the log holds, for every notebook executed, ipykernel's warning that
    the kernel "is running over TCP without encryption" (jupyter-cache starts kernels
    on localhost TCP, jupyter_client's default) and the start-up lines of
    TensorFlow's C++ runtime (oneDNN, CPU features; ``TF_CPP_MIN_LOG_LEVEL`` does not
    silence the oneDNN one): both go to the kernel process's stderr, which is the
    build's terminal, and ipykernel echoes there everything native code writes to
    file descriptor 2, besides putting it in the cell's output.

    So the build's kernels write their stderr to ``_build/logs/kernels.log`` (a
    header line per notebook). Nothing
    is lost: what cells write is in the executed notebooks
        (``_build/jupyter_execute``), and when a kernel fails,
    the build log shows the end of that file. The log gains ``executing <page> (<n>
    code cells)`` before each notebook runs (myst-nb then adds ``Executed notebook in
    ... seconds``) and a line for every cell that takes longer than ``SLOW_CELL_S``
    seconds, so a long notebook shows where it is.
    """
    import jupyter_cache.executors.utils as jc_utils
    from jupyter_client import AsyncKernelManager
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    log_path = Path(app.outdir).parent / "logs" / "kernels.log"

    class BuildKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            with open(
                log_path, "ab"
            ) as log:  # the kernel process keeps its own copy of the descriptor
                kw.setdefault("stderr", log)
                return await super().start_kernel(**kw)

    execute = jc_utils.executenb  # what jupyter-cache's single_nb_execution calls

    def executenb(nb, **kwargs):
        page = app.env.temp_data.get("docname") or "a notebook"
        n_code = sum(cell.get("cell_type") == "code" for cell in nb.cells)
        logger.info(f"executing {page} ({n_code} code cells)")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf8") as log:
            log.write(f"==== {page}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            start = log.tell()
        started, done = [0.0], [0]

        def on_cell_start(cell, cell_index):
            started[0] = time.monotonic()

        def on_cell_executed(cell, cell_index, execute_reply):
            done[0] += 1
            seconds = time.monotonic() - started[0]
            if seconds > SLOW_CELL_S:
                logger.info(
                    f"  {page}: code cell {done[0]} of {n_code} took {seconds:.0f} s"
                )

        kwargs.setdefault("kernel_manager_class", BuildKernelManager)
        kwargs.setdefault("on_cell_start", on_cell_start)
        kwargs.setdefault("on_cell_executed", on_cell_executed)
        try:
            return execute(nb, **kwargs)
        except (CellExecutionError, CellTimeoutError):
            raise  # a cell failed: myst-nb prints its traceback
        except (
            BaseException
        ):  # the kernel died or did not start: what it said is in the log
            with open(log_path, encoding="utf8", errors="replace") as log:
                log.seek(start)
                said = log.read().splitlines()[-40:]
            logger.info(
                f"{page}: the kernel's stderr ({log_path}) ends with:\n"
                + "\n".join(said)
            )
            raise

    jc_utils.executenb = executenb


def setup(app):
    # Used by myst-nb's renderer when nb_merge_streams is on (see _config.yml).
    import myst_nb.core.render as render

    render.coalesce_streams = _coalesce_streams
    _report_and_quiet_kernels(app)
    # Late priority: after the theme and extensions have put their scripts in the
    # context.
    app.connect("html-page-context", _dedupe_inline_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
