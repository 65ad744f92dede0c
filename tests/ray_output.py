"""Reading a Ray driver's captured output: its own lines apart from those Ray forwards
from actors and workers (prefixed "(RayTrainWorker pid=N)", possibly coloured), which
arrive asynchronously and so cannot be counted on to be there, or not, at any moment."""

import re

_FORWARDED = re.compile(r"(\x1b\[\d+m)?\(\S+ pid=\d+")


def driver_lines(out: str) -> list[str]:
    """The driver's own output lines."""
    return [line for line in out.splitlines() if not _FORWARDED.match(line)]


def forwarded_lines(out: str) -> list[str]:
    """The lines Ray forwarded from the driver's actors and workers."""
    return [line for line in out.splitlines() if _FORWARDED.match(line)]
