"""``python -m featavg.cli ...``: the ``featavg`` command."""

from featavg.cli import entry

entry()
