"""``make run ROUTER=gateway`` as a newcomer runs it: the sandbox on Gateway API through
a real Envoy, the tutorial's ``kubectl set image``, and the canary promotes with no errors
injected.

Why a separate run of its own and not the session's data plane: the sandbox is a whole
environment (its own control plane, Prometheus, Contour, Envoy and pod network), started
by ``python -m sandbox`` in a child process exactly as ``make run`` starts it. Handing it
the ``gateway`` fixture's data plane would test a sandbox that nobody runs. Only one data
plane (network namespace ``cbpods-<pid>`` and the host's route to the pod range) may
exist on the machine at a time, so tests marked ``own_data_plane`` are moved ahead of
every test that uses the ``gateway`` fixture (``tests.fixtures.gateway``'s
``pytest_collection_modifyitems``):
they run and stop their data plane before the session's one starts, and the test checks
that no other data plane is alive when it begins.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.gateway.dataplane import find_gateway_binaries
from sandbox.gateway.podnet import NETNS_PREFIX
from tests.sandbox.test_make_run import Terminal

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.prometheus,
    pytest.mark.gateway,
    pytest.mark.own_data_plane,
]

_NETNS_DIR = Path("/run/netns")


def live_data_planes() -> list[str]:
    """Pod network namespaces of running processes (``cbpods-<pid>``)."""
    names = []
    for path in sorted(_NETNS_DIR.glob(f"{NETNS_PREFIX}*")):
        pid = path.name.removeprefix(NETNS_PREFIX)
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            names.append(path.name)
    return names


@pytest.fixture
def gateway_sandbox() -> Iterator[Terminal]:
    """``python -m sandbox --router gateway`` in a terminal; quit (and checked gone) after."""
    running = live_data_planes()
    assert not running, (
        f"another Gateway data plane is running ({', '.join(running)}); the sandbox brings "
        "its own and only one may run at a time"
    )
    find_gateway_binaries()  # builds Contour on first use, with its progress shown
    term = Terminal([sys.executable, "-m", "sandbox", "--router", "gateway", "--port", "0"])
    yield term
    term.close()
    assert not live_data_planes(), "the sandbox left its data plane running after quit"


def test_gateway_sandbox_promotes_the_tutorials_set_image_with_no_errors_injected(
    gateway_sandbox: Terminal,
) -> None:
    terminal = gateway_sandbox
    banner = terminal.wait_for("data plane: Gateway API", 300)
    assert "Gateway API: Contour + Envoy at http://127.0.0.1:" in banner
    assert "(HTTPRoute podinfo)" in banner
    terminal.wait_for("Type help for the commands", 60)

    set_image = "kubectl set image deployment/podinfo podinfod=stefanprodan/podinfo:6.0.3 -n test"
    deadline = time.monotonic() + 60
    while True:  # right after start-up the Canary may still be adopting podinfo
        terminal.type(set_image)
        answer = terminal.wait_for("podinfo", 30)
        if "image updated" in answer:
            break
        assert "has not paused podinfo yet" in answer and time.monotonic() < deadline, answer
        time.sleep(1)
    terminal.wait_for("Advance podinfo.test canary weight 10", 90)
    # each step is judged by the contour success rate of the canary's Envoy cluster
    # (min 99 %); requests that Envoy sends to a canary pod before its backend listens
    # count as the canary's 503s and roll it back
    terminal.wait_for("Advance podinfo.test canary weight 50", 120)
    done = terminal.wait_for("Promotion completed!", 120)
    assert "stefanprodan/podinfo:6.0.3" in done
    terminal.wait_for("phase  Succeeded", 30)
    assert terminal.close() == 0
