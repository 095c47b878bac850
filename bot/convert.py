"""``canary-bot convert``: a Flagger Canary (flagger.app/v1beta1) as a canary-bot Canary.

The conversion is a pure function of the input text: it returns the converted
documents and one :class:`Finding` per field that could not be carried over as it was.
A finding either changes behaviour (Flagger would have done something canary-bot will
not do: exit status 2) or is a note (the result still behaves the same).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from rollout.canaries import API_VERSION, KIND, CanarySpec

FLAGGER_API_VERSION = "flagger.app/v1beta1"
TARGET_API_VERSION = API_VERSION
# Bounds on what is read: a pasted manifest is small; anything larger is a mistake.
MAX_INPUT_BYTES = 1024 * 1024
MAX_DOCUMENTS = 200

# Flagger fields with no canary-bot equivalent, and what the difference is.
_SPEC_DROPPED = {
    "autoscalerRef": "canary-bot leaves the Deployment's HPA on the stable side and sizes "
    "the canary itself (canaryReplicas: auto); Flagger made a primary HPA from it",
    "upstreamRef": "Gloo upstreams are not supported; canary-bot routes through the Ingress",
    "routeRef": "use the Canary's routeRef for Gateway API; Flagger's is provider-specific",
    "metricsServer": "canary-bot reads the Prometheus URL from its own configuration "
    "(PROMETHEUS_URL), not per Canary",
    "suspend": "canary-bot has no suspended Canary; delete the Canary to stop protecting "
    "the Deployment",
}
_ANALYSIS_DROPPED = {
    "mirror": "traffic mirroring needs a service mesh; canary-bot shifts weighted traffic only",
    "mirrorWeight": "traffic mirroring needs a service mesh",
    "sessionAffinity": "sticky canary sessions (cookie) are not supported; each request is "
    "routed by weight",
    "alerts": "alerts go to the namespace's Slack channel (channel routes in the config), "
    "not to Flagger AlertProviders",
    "primaryReadyThreshold": "canary-bot waits for every replica of the Deployment's rollout",
    "canaryReadyThreshold": "canary-bot waits for every canary replica to be Ready",
}
_SERVICE_DROPPED = {
    "primary": "canary-bot makes no primary Service; the Deployment's own Service stays "
    "the stable side, so primary labels/annotations have nowhere to go",
    "canary": "labels/annotations of the canary Service are not configurable",
    "portDiscovery": "the canary Service exposes service.port only",
    "timeout": "mesh routing option (Istio/App Mesh); the Ingress's own settings apply",
    "gateways": "Istio gateways are not supported",
    "gatewayRefs": "Flagger builds its own HTTPRoute; with canary-bot point routeRef at yours",
    "hosts": "hosts come from the Ingress in ingressRef",
    "trafficPolicy": "Istio traffic policy is not supported",
    "match": "mesh route matching is not supported (analysis.match covers header A/B tests)",
    "rewrite": "mesh URI rewrite is not supported",
    "retries": "mesh retries are not supported",
    "headers": "mesh header manipulation is not supported",
    "mirror": "traffic mirroring needs a service mesh",
    "corsPolicy": "mesh CORS policy is not supported",
    "backends": "Linkerd/SMI backends are not supported",
    "apex": "SMI apex Service is not supported; the Deployment's Service stays the apex",
    "delegation": "Istio VirtualService delegation is not supported",
    "appProtocol": "the canary Service copies no appProtocol",
    "unmanagedMetadata": "canary-bot does not manage the Service's metadata",
}
_KNOWN_SPEC = {
    "provider", "targetRef", "ingressRef", "service", "analysis", "canaryAnalysis",
    "progressDeadlineSeconds", "skipAnalysis", "revertOnDeletion",
} | set(_SPEC_DROPPED)  # fmt: skip
_ANALYSIS_CARRIED = {
    "interval", "threshold", "maxWeight", "stepWeight", "stepWeights",
    "stepWeightPromotion", "iterations", "match", "metrics", "webhooks",
}  # fmt: skip
_METRIC_FIELDS = {"name", "interval", "thresholdRange", "threshold", "query",
                  "templateRef", "templateVariables"}  # fmt: skip
_WEBHOOK_FIELDS = {"name", "type", "url", "timeout", "retries", "muteAlert", "metadata"}
_METADATA_KEPT = ("name", "namespace", "labels", "annotations")
_SERVER_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"


class ConvertError(ValueError):
    """The input cannot be converted at all; the message says what is wrong."""


@dataclass(frozen=True)
class Finding:
    """One field that was not carried over unchanged, and why."""

    document: str  # e.g. ``Canary test/podinfo``
    path: str  # e.g. ``spec.autoscalerRef``
    reason: str
    changes_behaviour: bool

    def line(self) -> str:
        """The stderr line: ``<doc>: <path>: <reason>``."""
        tag = "changes behaviour" if self.changes_behaviour else "note"
        return f"{self.document}: {self.path}: {tag}: {self.reason}"


@dataclass(frozen=True)
class Conversion:
    """The converted documents (in input order) and what was not carried over."""

    documents: list[dict[str, Any]]
    findings: list[Finding]

    @property
    def equivalent(self) -> bool:
        """Whether the result behaves as the input did (no behaviour-changing finding)."""
        return not any(f.changes_behaviour for f in self.findings)

    def to_yaml(self) -> str:
        """The documents as one multi-document YAML stream."""
        return yaml.safe_dump_all(self.documents, sort_keys=False, explicit_start=True)


def convert_text(text: str) -> Conversion:
    """Convert every Flagger Canary in a YAML stream; other documents pass through."""
    if len(text.encode()) > MAX_INPUT_BYTES:
        raise ConvertError(f"input is larger than {MAX_INPUT_BYTES // 1024} KiB")
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConvertError(f"input is not valid YAML: {_first_line(exc)}") from None
    if len(docs) > MAX_DOCUMENTS:
        raise ConvertError(f"input has {len(docs)} documents; at most {MAX_DOCUMENTS}")
    findings: list[Finding] = []
    out = [_convert_document(doc, i, findings) for i, doc in enumerate(docs, start=1)]
    if not any(_is_converted(d) for d in out):
        raise ConvertError(_no_canary_message(docs))
    return Conversion(out, findings)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _is_converted(doc: Mapping[str, Any]) -> bool:
    if doc.get("kind") == "List":
        return any(_is_converted(i) for i in doc.get("items") or [] if isinstance(i, dict))
    return doc.get("apiVersion") == TARGET_API_VERSION and doc.get("kind") == KIND


def _no_canary_message(docs: list[Any]) -> str:
    kinds = ", ".join(sorted({_describe(d) for d in docs})) or "nothing"
    return (
        f"no Flagger Canary ({FLAGGER_API_VERSION}, kind Canary) in the input, found: "
        f"{kinds}. Pass the YAML of a Flagger Canary, e.g. "
        "`kubectl get canaries.flagger.app podinfo -n test -o yaml | canary-bot convert -`"
    )


def _describe(doc: Any) -> str:
    if not isinstance(doc, dict):
        return f"a YAML {type(doc).__name__}"
    return f"{doc.get('apiVersion', '(no apiVersion)')} {doc.get('kind', '(no kind)')}"


def _convert_document(doc: Any, index: int, findings: list[Finding]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ConvertError(f"document {index} is a YAML {type(doc).__name__}, not an object")
    if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        items = [_convert_document(i, index, findings) for i in doc["items"]]
        return {**doc, "items": items}
    if doc.get("kind") != "Canary":
        return doc  # a Deployment or Ingress next to the Canary stays as it is
    version = doc.get("apiVersion")
    if version == TARGET_API_VERSION:
        raise ConvertError(f"document {index} is already a canary-bot Canary ({version})")
    if version != FLAGGER_API_VERSION:
        raise ConvertError(
            f"document {index}: apiVersion {version!r} is not {FLAGGER_API_VERSION}; "
            "Flagger's older versions (v1alpha3 with canaryAnalysis) must be upgraded to "
            "v1beta1 first"
        )
    return _convert_canary(doc, findings)


def _convert_canary(doc: dict[str, Any], findings: list[Finding]) -> dict[str, Any]:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ConvertError("a Flagger Canary has no metadata.name")
    label = f"Canary {meta['namespace']}/{name}" if meta.get("namespace") else f"Canary {name}"
    note = _Notes(label, findings)
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise ConvertError(f"{label}: spec is missing or not an object")
    new_spec = _convert_spec(spec, note)
    _check_against_model(new_spec, label)
    return {
        "apiVersion": TARGET_API_VERSION,
        "kind": KIND,
        "metadata": _convert_metadata(meta, note),
        "spec": new_spec,
    }


class _Notes:
    """Collects findings of one document."""

    def __init__(self, document: str, findings: list[Finding]) -> None:
        self.document = document
        self.findings = findings

    def change(self, path: str, reason: str) -> None:
        self.findings.append(Finding(self.document, path, reason, changes_behaviour=True))

    def note(self, path: str, reason: str) -> None:
        self.findings.append(Finding(self.document, path, reason, changes_behaviour=False))

    def error(self, path: str, reason: str) -> ConvertError:
        return ConvertError(f"{self.document}: {path}: {reason}")


def _convert_metadata(meta: dict[str, Any], note: _Notes) -> dict[str, Any]:
    kept = {k: meta[k] for k in _METADATA_KEPT if meta.get(k)}
    annotations = kept.get("annotations")
    if isinstance(annotations, dict) and _SERVER_ANNOTATION in annotations:
        kept["annotations"] = {k: v for k, v in annotations.items() if k != _SERVER_ANNOTATION}
        if not kept["annotations"]:
            del kept["annotations"]
        note.note(f"metadata.annotations.{_SERVER_ANNOTATION}", "kubectl writes it again")
    return kept


def _convert_spec(spec: dict[str, Any], note: _Notes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _check_provider(spec.get("provider"), "ingressRef" in spec, note)
    if spec.get("provider") == "nginx":
        out["provider"] = "nginx"
    out["targetRef"] = _ref(spec.get("targetRef"), "spec.targetRef", "apps/v1", "Deployment", note)
    if "ingressRef" not in spec:
        raise note.error(
            "spec.ingressRef",
            "missing; canary-bot shifts traffic through an nginx Ingress: add "
            "ingressRef (apiVersion networking.k8s.io/v1, kind Ingress, name)",
        )
    out["ingressRef"] = _ref(
        spec["ingressRef"], "spec.ingressRef", "networking.k8s.io/v1", "Ingress", note
    )
    if "service" in spec:
        out["service"] = _convert_service(spec["service"], out["targetRef"]["name"], note)
    if "canaryAnalysis" in spec:
        raise note.error("spec.canaryAnalysis", "renamed analysis in v1beta1; rename it first")
    if "analysis" in spec:
        out["analysis"] = _convert_analysis(spec["analysis"], note)
    for field in ("progressDeadlineSeconds", "skipAnalysis"):
        if field in spec:
            out[field] = spec[field]
    if spec.get("revertOnDeletion"):
        note.change(
            "spec.revertOnDeletion",
            "deleting a canary-bot Canary unpauses the Deployment, which then rolls out "
            "its current template; Flagger reverted the Deployment to the primary's spec",
        )
    for field, reason in _SPEC_DROPPED.items():
        if field in spec and not (field == "suspend" and spec[field] is False):
            note.change(f"spec.{field}", reason)
    for field in sorted(set(spec) - _KNOWN_SPEC):
        note.note(f"spec.{field}", "not a Flagger Canary field; Flagger ignored it too")
    return out


def _check_provider(provider: Any, has_ingress: bool, note: _Notes) -> None:
    if provider == "nginx":
        return
    if provider is None:
        if has_ingress:
            note.note(
                "spec.provider", "not set; canary-bot routes through the Ingress (nginx)"
            )
        return
    note.change(
        "spec.provider",
        f"{str(provider)[:64]!r}: canary-bot shifts traffic with ingress-nginx canary "
        "annotations (or a Gateway API HTTPRoute), not through this provider",
    )


def _ref(
    ref: Any, path: str, api_version: str, kind: str, note: _Notes
) -> dict[str, Any]:
    if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
        raise note.error(path, f"must be an object with a name ({kind})")
    if ref.get("kind", kind) != kind:
        raise note.error(
            f"{path}.kind", f"{str(ref['kind'])[:64]!r}: canary-bot protects a {kind} only"
        )
    if ref.get("apiVersion", api_version) != api_version:
        raise note.error(
            f"{path}.apiVersion", f"{str(ref['apiVersion'])[:64]!r}: expected {api_version}"
        )
    for field in sorted(set(ref) - {"name", "kind", "apiVersion"}):
        note.note(f"{path}.{field}", "not a field of an object reference; dropped")
    return {"apiVersion": api_version, "kind": kind, "name": ref["name"]}


def _convert_service(service: Any, target: str, note: _Notes) -> dict[str, Any]:
    if not isinstance(service, dict):
        raise note.error("spec.service", "must be an object (port, targetPort)")
    out: dict[str, Any] = {}
    for source, dest in (("port", "port"), ("targetPort", "targetPort"), ("portName", "name")):
        if source in service:
            out[dest] = service[source]
    name = service.get("name")
    if name is not None and name != target:
        note.change(
            "spec.service.name",
            f"{str(name)[:64]!r}: canary-bot keeps the Deployment's own Service as the stable "
            f"side and names the canary Service {target}-canary",
        )
    for field, reason in _SERVICE_DROPPED.items():
        if field in service:
            note.change(f"spec.service.{field}", reason)
    known = {"port", "targetPort", "portName", "name"} | set(_SERVICE_DROPPED)
    for field in sorted(set(service) - known):
        note.note(f"spec.service.{field}", "not a Flagger service field; Flagger ignored it too")
    return out


def _convert_analysis(analysis: Any, note: _Notes) -> dict[str, Any]:
    if not isinstance(analysis, dict):
        raise note.error("spec.analysis", "must be an object")
    out = {k: v for k, v in analysis.items() if k in _ANALYSIS_CARRIED}
    for field, reason in _ANALYSIS_DROPPED.items():
        if field in analysis and analysis[field] not in (None, False, 0, [], {}):
            note.change(f"spec.analysis.{field}", reason)
    known = _ANALYSIS_CARRIED | set(_ANALYSIS_DROPPED)
    for field in sorted(set(analysis) - known):
        note.note(f"spec.analysis.{field}", "not a Flagger analysis field; Flagger ignored it too")
    if isinstance(out.get("metrics"), list):
        out["metrics"] = list(_convert_metrics(out["metrics"], note))
    if isinstance(out.get("webhooks"), list):
        out["webhooks"] = [_known_only(w, _WEBHOOK_FIELDS, f"webhooks[{i}]", note)
                           for i, w in enumerate(out["webhooks"])]  # fmt: skip
    return out


def _convert_metrics(metrics: list[Any], note: _Notes) -> Iterator[Any]:
    for i, metric in enumerate(metrics):
        path = f"spec.analysis.metrics[{i}]"
        if not isinstance(metric, dict):
            yield metric  # the model check names the problem
            continue
        kept = _known_only(metric, _METRIC_FIELDS, f"metrics[{i}]", note)
        threshold = kept.pop("threshold", None)
        if threshold is not None and "thresholdRange" not in kept:
            # Flagger's deprecated threshold: a floor for the success rate, a ceiling else
            bound = "min" if kept.get("name") == "request-success-rate" else "max"
            kept["thresholdRange"] = {bound: threshold}
            note.note(f"{path}.threshold", f"deprecated; written as thresholdRange.{bound}")
        elif threshold is not None:
            note.note(f"{path}.threshold", "deprecated and overridden by thresholdRange")
        yield kept


def _known_only(item: Any, known: set[str], where: str, note: _Notes) -> Any:
    if not isinstance(item, dict):
        return item
    for field in sorted(set(item) - known):
        note.note(f"spec.analysis.{where}.{field}", "not a Flagger field; Flagger ignored it too")
    return {k: v for k, v in item.items() if k in known}


def _check_against_model(spec: dict[str, Any], label: str) -> None:
    """Refuse a result the API server would refuse (the Canary model), naming the field."""
    try:
        CanarySpec.model_validate(spec)
    except ValidationError as exc:
        raise ConvertError(f"{label}: the converted spec is not valid: {_validation_text(exc)}") from None


def _validation_text(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        loc = ".".join(str(p) for p in error["loc"])
        parts.append(f"spec.{loc}: {error['msg']}" if loc else str(error["msg"]))
    return "; ".join(parts)
