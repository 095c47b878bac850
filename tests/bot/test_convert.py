"""``canary-bot convert``: Flagger Canary in, canary-bot Canary out, findings on stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.convert import ConvertError, convert_text
from sandbox.controlplane import ControlPlane
from tests.fixtures.tutorial import FLAGGER_CANARY as TUTORIAL_CANARY
from tests.rollout.test_crd import ROOT, Kubectl


def _run(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    path = tmp_path / "canary.yaml"
    path.write_text(text)
    status = main(["convert", str(path)])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_tutorial_canary_converts_to_the_same_spec_with_only_the_api_version_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _run(tmp_path, TUTORIAL_CANARY, capsys)
    assert status == 0, err
    assert err == ""
    (doc,) = list(yaml.safe_load_all(out))
    expected = yaml.safe_load(TUTORIAL_CANARY)
    expected["apiVersion"] = "canarybot.io/v1alpha1"
    assert doc == expected


def test_stdin_is_read_with_a_dash() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())", "convert", "-"],
        input=TUTORIAL_CANARY,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["apiVersion"] == "canarybot.io/v1alpha1"


def test_fields_that_change_behaviour_are_named_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    canary = yaml.safe_load(TUTORIAL_CANARY)
    spec = canary["spec"]
    spec["provider"] = "istio"
    spec["autoscalerRef"] = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo"
    }
    spec["service"]["primary"] = {"labels": {"tier": "primary"}}
    spec["service"]["canary"] = {"annotations": {"a": "b"}}
    spec["analysis"]["sessionAffinity"] = {"cookieName": "flagger-cookie"}
    spec["analysis"]["mirror"] = True
    spec["analysis"]["alerts"] = [{"name": "on-call", "providerRef": {"name": "slack"}}]
    status, out, err = _run(tmp_path, yaml.safe_dump(canary), capsys)
    assert status == 2
    for path in (
        "spec.provider",
        "spec.autoscalerRef",
        "spec.service.primary",
        "spec.service.canary",
        "spec.analysis.sessionAffinity",
        "spec.analysis.mirror",
        "spec.analysis.alerts",
    ):
        assert f"Canary test/podinfo: {path}: changes behaviour:" in err, path
    assert "'istio'" in err
    doc = yaml.safe_load(out)  # the rest is still printed for review
    assert "autoscalerRef" not in doc["spec"]
    assert "sessionAffinity" not in doc["spec"]["analysis"]
    assert "primary" not in doc["spec"]["service"]


def test_unknown_fields_are_named_as_notes_and_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    canary = yaml.safe_load(TUTORIAL_CANARY)
    canary["spec"]["analisys"] = {"interval": "1s"}
    canary["spec"]["analysis"]["metrics"][0]["weight"] = 3
    canary["status"] = {"phase": "Succeeded"}
    canary["metadata"]["uid"] = "123"
    status, out, err = _run(tmp_path, yaml.safe_dump(canary), capsys)
    assert status == 0, err
    assert "spec.analisys: note: not a Flagger Canary field" in err
    assert "spec.analysis.metrics[0].weight: note:" in err
    doc = yaml.safe_load(out)
    assert "analisys" not in doc["spec"]
    assert "status" not in doc and "uid" not in doc["metadata"]


def test_deprecated_metric_threshold_becomes_a_threshold_range() -> None:
    canary = yaml.safe_load(TUTORIAL_CANARY)
    canary["spec"]["analysis"]["metrics"] = [
        {"name": "request-success-rate", "threshold": 99, "interval": "1m"},
        {"name": "request-duration", "threshold": 500, "interval": "1m"},
    ]
    result = convert_text(yaml.safe_dump(canary))
    metrics = result.documents[0]["spec"]["analysis"]["metrics"]
    assert metrics[0]["thresholdRange"] == {"min": 99}
    assert metrics[1]["thresholdRange"] == {"max": 500}
    assert result.equivalent


def test_a_list_of_documents_converts_the_canary_and_keeps_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo"}}
    text = yaml.safe_dump(deployment) + "---\n" + TUTORIAL_CANARY + "---\n"
    status, out, err = _run(tmp_path, text, capsys)
    assert status == 0, err
    docs = list(yaml.safe_load_all(out))
    assert docs[0] == deployment
    assert docs[1]["apiVersion"] == "canarybot.io/v1alpha1"


def test_a_kubectl_list_converts_each_item() -> None:
    items = [yaml.safe_load(TUTORIAL_CANARY), yaml.safe_load(TUTORIAL_CANARY)]
    items[1]["metadata"]["name"] = "backend"
    result = convert_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    converted = result.documents[0]["items"]
    assert [c["metadata"]["name"] for c in converted] == ["podinfo", "backend"]
    assert {c["apiVersion"] for c in converted} == {"canarybot.io/v1alpha1"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n", "no Flagger Canary"),
        ("", "no Flagger Canary"),
        ("- a\n- b\n", "not an object"),
        ("just a string\n", "not an object"),
        ("a: [unclosed\n", "not valid YAML"),
        (TUTORIAL_CANARY.replace("flagger.app/v1beta1", "flagger.app/v1alpha3"), "v1beta1"),
        (TUTORIAL_CANARY.replace("flagger.app/v1beta1", "canarybot.io/v1alpha1"), "already"),
        (TUTORIAL_CANARY.replace("kind: Deployment", "kind: DaemonSet"), "targetRef.kind"),
        (TUTORIAL_CANARY.replace("maxWeight: 50", "maxWeight: 500"), "maxWeight"),
        (TUTORIAL_CANARY.replace("interval: 10s", "interval: often"), "spec.analysis"),
        (TUTORIAL_CANARY.replace("progressDeadlineSeconds: 60", "progressDeadlineSeconds: x"),
         "progressDeadlineSeconds"),
        (TUTORIAL_CANARY.replace("  name: podinfo\n  namespace", "  namespace"), "metadata.name"),
        ("[" * 5000 + "]" * 5000, "not valid YAML"),
    ],
)
def test_hostile_or_odd_input_gets_one_clear_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    status, out, err = _run(tmp_path, text, capsys)
    assert status == 2
    assert out == ""
    assert message in err
    assert err.startswith("canary-bot convert: ")
    assert "Traceback" not in err


def test_missing_ingress_ref_says_what_to_add() -> None:
    canary = yaml.safe_load(TUTORIAL_CANARY)
    del canary["spec"]["ingressRef"]
    with pytest.raises(ConvertError, match="add ingressRef"):
        convert_text(yaml.safe_dump(canary))


def test_oversized_input_is_refused() -> None:
    with pytest.raises(ConvertError, match="larger than"):
        convert_text("# " + "x" * (2 * 1024 * 1024))


def test_a_missing_file_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["convert", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_help_explains_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = capsys.readouterr().out
    assert "flagger.app/v1beta1" in text and "Exit status" in text


@pytest.mark.cluster
def test_the_converted_canary_is_accepted_by_the_api_server(
    control_plane: ControlPlane, namespace: str
) -> None:
    kubectl = Kubectl(control_plane)
    kubectl("apply", "-k", str(ROOT / "manifests" / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/canaries.canarybot.io")
    flagger = yaml.safe_load(TUTORIAL_CANARY)
    flagger["metadata"]["namespace"] = namespace
    flagger["spec"]["autoscalerRef"] = {"kind": "HorizontalPodAutoscaler", "name": "podinfo"}
    flagger["spec"]["analysis"]["sessionAffinity"] = {"cookieName": "c"}
    result = convert_text(yaml.safe_dump(flagger))
    assert not result.equivalent  # named on stderr; the rest is still a valid Canary
    kubectl("apply", "--dry-run=server", "-f", "-", stdin=result.to_yaml())
    kubectl("apply", "-f", "-", stdin=result.to_yaml())
    stored = yaml.safe_load(kubectl("get", "cbc", "podinfo", "-n", namespace, "-o", "yaml").stdout)
    assert stored["spec"]["analysis"]["webhooks"][0]["name"] == "acceptance-test"
    assert stored["spec"]["targetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"
    }
