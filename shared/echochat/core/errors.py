"""Protocol errors: a command handler raises one, the dispatcher turns it into a numeric reply.

Raising keeps every handler's happy path straight-line code, the way IRC
servers are usually written, while all error replies share one formatter.
"""

from __future__ import annotations


class CommandError(Exception):
    """A numeric error reply for the client whose command failed.

    ``params`` follow the client's nick; ``text`` becomes the trailing
    parameter, e.g. ``CommandError("401", ["bob"], "No such nick/channel")``.
    """

    def __init__(self, numeric: str, params: list[str], text: str) -> None:
        super().__init__(f"{numeric} {' '.join(params)} :{text}")
        self.numeric = numeric
        self.params = params
        self.text = text
