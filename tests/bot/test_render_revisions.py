"""What the card says about releases opened from a Deployment revision: who changed the
template, and after a rollback what the spec asks for against what the pods run."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.render.card import card_blocks
from bot.render.limits import check_message
from bot.render.text import card_text
from rollout.models import CanaryRelease, Phase
from tests.bot.factories import NOW, release


def _managed(base: CanaryRelease, changed_by: str, **status: Any) -> CanaryRelease:
    raw = base.model_dump(mode="json", by_alias=True)
    raw["spec"]["canaryRef"] = {"name": "podinfo"}
    raw["spec"]["changedBy"] = changed_by
    raw["spec"]["requestedBy"] = {"source": "kubectl"}
    raw["status"].update(status)
    return CanaryRelease.model_validate(raw)


def _card(r: CanaryRelease) -> str:
    blocks = card_blocks(r, NOW)
    check_message(blocks, "card")
    return json.dumps([b.to_dict() for b in blocks], ensure_ascii=False)


@pytest.mark.parametrize(
    ("manager", "shown"),
    [
        ("kubectl-set", "kubectl-set"),
        ("kustomize-controller", "kustomize-controller (Flux)"),
        ("argocd-controller", "argocd-controller (Argo CD)"),
        ("helm", "helm"),
        ("canary-bot-start/U0ALICE", "<@U0ALICE> with /canary start"),
    ],
)
def test_the_card_says_who_changed_the_template(manager: str, shown: str) -> None:
    r = _managed(release(), manager)
    assert f"*Changed by*\\n{shown}" in _card(r)
    plain = shown.replace("<@U0ALICE>", "U0ALICE")
    assert f"changed by  {plain}" in card_text(r, NOW)


def test_a_field_manager_is_escaped_and_never_a_mention() -> None:
    r = _managed(release(), "<!channel> *evil*")
    card = _card(r)
    assert "<!channel>" not in card
    assert "&lt;!channel&gt;" in card
    forged = _managed(release(), "canary-bot-start/<!here>")
    assert "<!here>" not in _card(forged)


def test_an_unmanaged_release_has_no_changed_by() -> None:
    assert "Changed by" not in _card(release())
    assert "changed by" not in card_text(release(), NOW)
    assert "*Requested by*\\n<@U0ALICE>" in _card(release())


def test_a_revision_names_who_changed_it_instead_of_a_requester() -> None:
    card = _card(_managed(release(), "kubectl-set"))
    assert "Requested by" not in card


def test_after_a_rollback_the_card_says_what_the_spec_asks_and_the_pods_run() -> None:
    failed = _managed(
        release(Phase.FAILED, weight=0),
        "kubectl-set",
        reason="failed checks threshold reached 10",
    )
    when = failed.status.finished_at
    assert when is not None
    sentence = (
        "spec asks for podinfod=stefanprodan/podinfo:6.0.3, pods run "
        f"podinfod=stefanprodan/podinfo:6.0.0 (rolled back at {when:%Y-%m-%dT%H:%M:%SZ}: "
        "failed checks threshold reached 10); push a fixed revision or revert"
    )
    assert sentence in _card(failed)
    assert sentence in card_text(failed, NOW)


def test_no_rolled_back_line_for_a_promoted_or_a_slack_started_release() -> None:
    promoted = _managed(release(Phase.SUCCEEDED, weight=0), "kubectl-set")
    assert "spec asks for" not in _card(promoted)
    assert "spec asks for" not in _card(release(Phase.FAILED, weight=0))
