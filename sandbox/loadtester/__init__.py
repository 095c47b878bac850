"""A local stand-in for flagger-loadtester.

It speaks the same HTTP API as the real load tester (the Flagger webhook payload on
``POST /``, the ``/gate/*`` and ``/rollback/*`` gates, ``/healthz``) and answers with
the same status codes and bodies, but it never runs a shell command. Commands are
recognised and simulated instead:

* an acceptance test (``curl ... | grep token``, or any ``curl``/``wget`` pipeline)
  passes unless the test injected a failure for it;
* a ``hey`` load command is parsed (``-z``, ``-q``, ``-c``, ``-n``, ``-m``, URL) and
  handed to an optional ``on_load`` callback, so the sandbox can raise the simulated
  traffic; like the real task runner, a command already running for the same canary
  is not started twice;
* ``true``, ``false``, ``exit N`` and ``echo ...`` behave as in a shell; anything else
  fails with exit status 127 (or passes, with ``unknown_commands="pass"``).

Every request is recorded as a :class:`WebhookCall` for assertions, and failures can
be injected per webhook name with :meth:`LoadTester.fail`.

The webhook name is not part of Flagger's payload, so a call's ``webhook`` is the
request path when the hook points at one (``http://loadtester/acceptance-test``; the
real load tester serves every unknown path as ``/``), otherwise the kind of its command:
``acceptance-test`` for curl/wget, ``load-test`` for hey, as the tutorial names them.

The package by concern:

- :mod:`.server`: the HTTP server, its routes and the gates (:class:`LoadTester`);
- :mod:`.commands`: recognising and simulating commands, and the task types;
- :mod:`.recorder`: the records and the test API (calls, injected failures, gates);
- :mod:`.cli`: ``python -m sandbox.loadtester``.
"""

from sandbox.loadtester.cli import main
from sandbox.loadtester.commands import classify, parse_hey
from sandbox.loadtester.recorder import LoadRequest, WebhookCall
from sandbox.loadtester.server import LoadTester

__all__ = ["LoadRequest", "LoadTester", "WebhookCall", "classify", "main", "parse_hey"]
