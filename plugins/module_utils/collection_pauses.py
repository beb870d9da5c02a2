# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep Python's full garbage collections from walking objects a run did not make.

A full collection walks every object the collector tracks in the process. One that already
holds many (boto3's or psycopg's loaded modules, a host that imports more, such as a benchmark
running awscli in the same process) pays tens of milliseconds per full collection, and a run's
own allocations (a listing's objects, a slot's decoded keys) trigger one every so often: on a
rerun that changes nothing, a pause as long as the rerun itself.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def older_objects_left_out_of_collection() -> Iterator[None]:
    """Run with the objects that exist now left out of collection passes, then put them back.

    The older objects are in use anyway; the run's own garbage is still collected. A caller that
    froze objects itself is left alone, since putting them back is its business.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
