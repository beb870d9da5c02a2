# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors of the delta core: each names the option, the side and what to do."""

from __future__ import annotations

from typing import Any


class DeltaError(Exception):
    """A delta run cannot go on; ``details`` is what the module passes to ``fail_json``."""

    def __init__(self, message: str, side: str | None = None, option: str | None = None, **details: Any):
        self.side = side
        self.option = option
        self.details = dict(details)
        if side:
            self.details["side"] = side
        if option:
            self.details["option"] = option
        super().__init__(message)


class InvalidOptions(DeltaError):
    """The options contradict each other or name something that does not exist; nothing was written."""


class ConnectionFailed(DeltaError):
    """One side's server could not be reached or refused the account."""


class SchemaDrift(DeltaError):
    """The target lacks a table or column of the source, or disagrees on its type; nothing was written."""


class BinlogNotReady(DeltaError):
    """The source's binary log cannot serve the ``binlog`` strategy (format, row image, purged file)."""


class VerifyFailed(DeltaError):
    """After applying, some chunks still differ between the sides."""
