# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL side of the delta core: the dialect, logical decoding and sequences.

Chunking, checksum comparison, schema drift and progress encoding are shared with
``mysql_delta`` and imported from there.
"""
