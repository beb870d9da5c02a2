"""No line per request in the lab's log; warnings and errors still go there.

werkzeug's development server, which moto's ThreadedMotoServer runs, logs every request at INFO
(``127.0.0.1 - - [date] "GET /key HTTP/1.1" 200 -``), formatted and written under the logging
lock by the thread that served it. A benchmark's copy of a few thousand objects wrote 21 MB of
such lines to ``state/labd.log``, and writing them was about half of moto's CPU per small request
(a GET or HEAD took 3.2 ms of it with the lines, 1.7 ms without) on the lab's two shared cores:
cost AWS does not charge its clients. Requests are counted where a test or benchmark needs them,
at the client. ``LAB_REQUEST_LOG=1`` in labctl's environment keeps the lines, for debugging.
"""

from __future__ import annotations

import logging
import os

LOGGER = "werkzeug"


def apply() -> None:
    if os.environ.get("LAB_REQUEST_LOG") == "1":
        return
    logging.getLogger(LOGGER).setLevel(logging.WARNING)
