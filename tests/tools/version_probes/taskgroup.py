"""``asyncio.TaskGroup`` (3.11+): a failing child cancels its siblings and the group raises.

echochat's asyncio adapter runs each client's reader and writer in one
TaskGroup, and every connection handler in another, as trio and anyio do
with nurseries and task groups (Lib/asyncio/taskgroups.py). A group also
keeps strong references to its tasks, which bare ``create_task`` does not
(gh-88831).

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
"""

from __future__ import annotations

import asyncio
import json


async def main() -> dict[str, object]:
    if not hasattr(asyncio, "TaskGroup"):
        return {"outcome": "absent"}
    forever = asyncio.Event()
    sibling: asyncio.Task[bool] | None = None

    async def fail() -> None:
        raise ValueError("child failed")

    raised = "nothing"
    try:
        async with asyncio.TaskGroup() as group:
            sibling = group.create_task(forever.wait())
            group.create_task(fail())
    except Exception as error:  # ExceptionGroup is a builtin only from 3.11.
        nested = [type(inner).__name__ for inner in getattr(error, "exceptions", [])]
        raised = f"{type(error).__name__}{nested}"
    cancelled = sibling is not None and sibling.cancelled()
    if raised == "ExceptionGroup['ValueError']" and cancelled:
        outcome = "cancels siblings, raises ExceptionGroup"
    else:
        outcome = f"raised {raised}, sibling cancelled={cancelled}"
    return {"outcome": outcome}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
