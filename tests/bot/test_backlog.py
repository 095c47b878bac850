"""The bound on work after acks: at most N commands work at once, the rest wait; past
the queue limit a command is refused as busy, with a message that says nothing was done."""

from __future__ import annotations

import asyncio

from bot.backlog import Backlog


async def test_at_most_concurrent_commands_work_at_once_and_every_one_gets_its_turn() -> None:
    backlog = Backlog(concurrent=3, queued=100)
    working = 0
    most = 0
    release = asyncio.Event()
    done: list[int] = []

    async def command(i: int) -> None:
        nonlocal working, most
        async with backlog.turn():
            working += 1
            most = max(most, working)
            await release.wait()
            working -= 1
            done.append(i)

    tasks = [asyncio.create_task(command(i)) for i in range(10)]
    while backlog.waiting < 7:  # three work, seven wait their turn
        await asyncio.sleep(0)
    assert working == 3 and not backlog.full
    release.set()
    await asyncio.gather(*tasks)
    assert most == 3
    assert sorted(done) == list(range(10))
    assert backlog.waiting == 0


async def test_a_full_backlog_refuses_with_a_message_saying_nothing_was_done() -> None:
    backlog = Backlog(concurrent=1, queued=2)
    gate = asyncio.Event()

    async def command() -> None:
        async with backlog.turn():
            await gate.wait()

    tasks = [asyncio.create_task(command()) for _ in range(3)]
    while backlog.waiting < 2:
        await asyncio.sleep(0)
    assert backlog.full
    assert "busy (2 commands waiting); nothing was done" in backlog.busy_text()
    gate.set()
    await asyncio.gather(*tasks)
    assert not backlog.full


async def test_a_failing_command_gives_its_slot_back() -> None:
    backlog = Backlog(concurrent=1, queued=10)
    try:
        async with backlog.turn():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    async with asyncio.timeout(5):
        async with backlog.turn():
            pass
