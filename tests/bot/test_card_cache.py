"""The status card is built once per state of a release and reused with the time updated."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import MarkdownTextObject, SectionBlock

from bot.render.card import card_blocks
from bot.render.limits import CheckedBlock, MessageTooLarge, check_message
from rollout.models import CanaryRelease, Phase
from tests.bot.factories import NOW, release


def stored(r: CanaryRelease, version: str) -> CanaryRelease:
    """``r`` as read from the API server at ``version``."""
    metadata = r.metadata.model_copy(update={"resource_version": version})
    return r.model_copy(update={"metadata": metadata})


def fresh(r: CanaryRelease, now: Any, **kwargs: bool) -> list[dict[str, Any]]:
    """The card built from the models, without the cache (no resourceVersion)."""
    return check_message(card_blocks(stored(r, ""), now, **kwargs))


@pytest.mark.parametrize("phase", list(Phase))
def test_a_cached_card_is_the_card_built_afresh(phase: Phase) -> None:
    one = release(phase, uid=f"uid-{phase.value}")
    for minutes in (0, 1, 7):  # the elapsed time moves on; the object does not change
        now = NOW + timedelta(minutes=minutes, seconds=13)
        for with_buttons in (True, False):
            cached = check_message(card_blocks(stored(one, "41"), now, with_buttons=with_buttons))
            assert cached == fresh(one, now, with_buttons=with_buttons)


def test_the_card_of_a_running_release_shows_the_time_of_each_request() -> None:
    one = stored(release(Phase.PROGRESSING, uid="uid-time"), "7")
    first = check_message(card_blocks(one, NOW))
    later = check_message(card_blocks(one, NOW + timedelta(minutes=2)))
    assert "elapsed 5m" in str(first) and "elapsed 7m" in str(later)


def test_a_new_resource_version_shows_the_new_state() -> None:
    before = stored(release(Phase.PROGRESSING, weight=10, uid="uid-moves"), "100")
    after = stored(release(Phase.PROGRESSING, weight=30, uid="uid-moves"), "101")
    assert "10% (max 50%)" in str(check_message(card_blocks(before, NOW)))
    shown = str(check_message(card_blocks(after, NOW)))
    assert "30% (max 50%)" in shown and "10% (max 50%)" not in shown


def test_adding_to_a_shown_card_does_not_change_the_next_one() -> None:
    one = stored(release(Phase.PROGRESSING, uid="uid-append"), "5")
    shown = card_blocks(one, NOW)
    shown.append(
        SectionBlock(text=MarkdownTextObject(text="Canary podinfo: Idle"))
    )  # as status does
    assert check_message(card_blocks(one, NOW + timedelta(seconds=1))) == fresh(
        one, NOW + timedelta(seconds=1)
    )


def test_checked_blocks_still_count_toward_slacks_block_limit() -> None:
    blocks = card_blocks(stored(release(uid="uid-limit"), "9"), NOW)
    assert all(isinstance(b, CheckedBlock) for b in blocks)
    with pytest.raises(MessageTooLarge, match="blocks; Slack allows 50"):
        check_message(blocks * 11)
