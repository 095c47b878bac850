"""Named points where the engine can be made to die, for crash-safety tests.

``CANARY_BOT_CRASH_AT=Failed:StoreDecision`` makes the process kill itself (SIGKILL, no
cleanup, as if its node died) right after ``advance`` performed that step: the phase the
decision moves to, then the action (``SetWeight``, ``StoreDecision``, ``DeleteCanary``,
...). The revision loop has points of its own, named ``revisions:<step>`` (e.g.
``revisions:AbortRequested``: a superseded release's abort was requested, its successor
not opened yet). Unset, as in every real deployment, a failpoint is one dictionary lookup.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger("canary_bot.failpoints")

ENV = "CANARY_BOT_CRASH_AT"
_ARMED = frozenset(p.strip() for p in os.environ.get(ENV, "").split(",") if p.strip())


def failpoint(name: str) -> None:
    """Die here if ``name`` is armed."""
    if name in _ARMED:
        log.error("failpoint %s: killing the process", name)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
