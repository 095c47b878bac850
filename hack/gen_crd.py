#!/usr/bin/env python3
"""Generate manifests/crds/: the CanaryRelease and Canary CRDs, from the pydantic models.

    python hack/gen_crd.py           # rewrite manifests/crds/crd.yaml and canaries.yaml
    python hack/gen_crd.py --check   # exit 1 if the committed file is out of date

The models in rollout/models.py (with rollout/analysis_spec.py, rollout/refs.py and
rollout/schema.py, which it draws on) are the one definition of the resource. Their JSON
schema (camelCase aliases, required fields, enums, numeric and length bounds) is turned
into a Kubernetes structural schema: ``$ref`` inlined, ``anyOf [X, null]`` made
``nullable``, ``int | str`` made ``x-kubernetes-int-or-string``, titles and defaults
dropped (the models apply defaults when they read an object, so the API server stores
what the user wrote).

Bounds that JSON schema has no word for are carried by the models in extension keys
and written here as CEL rules: ``x-duration`` (a duration's range: ``duration(self)``
between the bounds), ``propertyNames`` (the length and pattern of a map's keys), the
range of an ``int | str`` field, and ``models.IMMUTABLE_SPEC_FIELDS`` (``self ==
oldSelf`` on the spec). Every rule names the field it refuses.

Checks written as pydantic validators are not in the JSON schema. Each one is mapped here
to its schema form (a pattern, a bound, a CEL rule, a list-map key); a validator this
script does not know stops generation, so a new rule in the models cannot silently miss
the CRD.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from rollout import analysis_spec, canaries, limits, models, schema  # noqa: E402

CRD_PATH = ROOT / "manifests" / "crds" / "crd.yaml"
CANARY_CRD_PATH = ROOT / "manifests" / "crds" / "canaries.yaml"

Schema = dict[str, Any]

# RE2 (the API server's regex engine) has no look-ahead, so this is parse_duration's
# grammar without it; tests check both agree on every duration they try.
DURATION_PATTERN = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$"
DURATION_SCHEMA: Schema = {
    "pattern": DURATION_PATTERN,
    "minLength": 2,
    "maxLength": limits.MAX_DURATION_LENGTH,
}

# Field validators -> what they add to the field's schema, keyed "Model.validator".
# ``None`` marks a rule with no schema form; the engine reports it in status instead.
FIELD_RULES: dict[str, Schema | None] = {
    "ObjectRef._object_name": {"pattern": schema._DNS_SUBDOMAIN.pattern, "maxLength": 253},
    "TargetRef._object_name": {"pattern": schema._DNS_SUBDOMAIN.pattern, "maxLength": 253},
    "IngressRef._object_name": {"pattern": schema._DNS_SUBDOMAIN.pattern, "maxLength": 253},
    "Webhook._http_url": {"pattern": "^https?://"},
    "SecretKeyRef._secret_name": {"pattern": schema._DNS_SUBDOMAIN.pattern, "maxLength": 253},
    "SecretKeyRef._secret_key": {"pattern": analysis_spec._SECRET_KEY.pattern},
    "Analysis._max_weight_range": {"minimum": 1, "maximum": 100},
    "Analysis._step_weight_range": {"minimum": 1, "maximum": 100},
    # Strictly increasing: no duplicates (a set) and sorted.
    "Analysis._step_weights_increasing": {
        "items": {"minimum": 1, "maximum": 100},
        "x-kubernetes-list-type": "set",
        "x-kubernetes-validations": [
            {"rule": "self.isSorted()", "message": "stepWeights must increase strictly"}
        ],
    },
    "CanaryReleaseSpec._canary_replicas_range": {
        "x-kubernetes-validations": [
            {
                "rule": "type(self) == string ? self == 'auto' : "
                f"(self >= 1 && self <= {models.MAX_CANARY_REPLICAS})",
                "message": "canaryReplicas must be auto or a number from 1 to "
                f"{models.MAX_CANARY_REPLICAS}",
            }
        ]
    },
    "RouteRef._route_name": {"pattern": schema._DNS_SUBDOMAIN.pattern, "maxLength": 253},
    "RouteRef._route_namespace": {"pattern": schema._DNS_LABEL.pattern, "maxLength": 63},
    "CanarySpec._canary_replicas_range": {
        "x-kubernetes-validations": [
            {
                "rule": "type(self) == string ? self == 'auto' : "
                f"(self >= 1 && self <= {models.MAX_CANARY_REPLICAS})",
                "message": "canaryReplicas must be auto or a number from 1 to "
                f"{models.MAX_CANARY_REPLICAS}",
            }
        ]
    },
    "CanaryReleaseSpec._valid_images": {
        "additionalProperties": {"pattern": schema._IMAGE.pattern, "maxLength": 255}
    },
}

# Model validators -> CEL rules on the object (plus list-map keys for uniqueness).
MODEL_RULES: dict[str, Schema] = {
    "ThresholdRange._ordered": {
        "x-kubernetes-validations": [
            {
                "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                "message": "thresholdRange.min must not be above thresholdRange.max",
            }
        ]
    },
    "Analysis._match_needs_iterations": {
        "x-kubernetes-validations": [
            {
                "rule": "!has(self.match) || size(self.match) == 0 || has(self.iterations)",
                "message": "analysis.match (A/B testing) needs analysis.iterations",
            }
        ],
        # Unique metric and webhook names: list-maps keyed by name reject duplicates.
        "properties": {
            "metrics": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
            "webhooks": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        },
    },
}

MODEL_RULES["CanaryReleaseSpec._one_router"] = {
    "x-kubernetes-validations": [
        {
            "rule": "has(self.ingressRef) != has(self.routeRef)",
            "message": "needs exactly one of ingressRef (ingress-nginx) and routeRef "
            "(Gateway API HTTPRoute)",
        }
    ]
}

MODEL_RULES["CanarySpec._one_router"] = MODEL_RULES["CanaryReleaseSpec._one_router"]

MODEL_RULES["Webhook._one_url"] = {
    "x-kubernetes-validations": [
        {
            "rule": "has(self.url) != has(self.urlFrom)",
            "message": "needs exactly one of url and urlFrom",
        },
        {
            "rule": "!has(self.metadataFrom) || size(self.metadataFrom) == 0 || has(self.urlFrom)",
            "message": (
                "metadataFrom needs urlFrom (secret values only go to a URL kept in a Secret)"
            ),
        },
    ]
}

# Flagger analysis fields canary-bot does not support: declared in Flagger's shape, so that
# the API server does not prune them silently, and refused by a rule that names the field.
_ANY_OBJECT: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_PERCENT: Schema = {"type": "integer", "minimum": 0, "maximum": 100}
FLAGGER_SHAPES: dict[str, Schema] = {
    "mirror": {"type": "boolean"},
    "mirrorWeight": _PERCENT,
    "sessionAffinity": _ANY_OBJECT,
    "alerts": {"type": "array", "maxItems": 100, "items": _ANY_OBJECT},
    "canaryReadyThreshold": _PERCENT,
    "primaryReadyThreshold": _PERCENT,
}
assert set(FLAGGER_SHAPES) == set(models.UNSUPPORTED_ANALYSIS_FIELDS)
MODEL_RULES["Analysis._no_unsupported_fields"] = {
    "properties": dict(FLAGGER_SHAPES),
    "x-kubernetes-validations": [
        {
            "rule": f"!has(self.{field})",
            "message": f"analysis.{field} is a Flagger field canary-bot does not support: "
            f"{why}",
            "fieldPath": f".{field}",
        }
        for field, why in models.UNSUPPORTED_ANALYSIS_FIELDS.items()
    ],
}

# Models whose unknown fields are kept by the API server (none: an unknown field in a
# pasted block is refused, by kubectl's field validation and by the models).
PRESERVE_UNKNOWN: set[str] = set()


# The type each refused Flagger field has in Flagger's Canary: CEL needs a typed field.
_OBJECT: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_TEXT: Schema = {"type": "string", "maxLength": 1024}
_FLAG: Schema = {"type": "boolean"}
_FLAGGER_TYPES: dict[str, Schema] = {
    "metricsServer": _TEXT,
    "revertOnDeletion": _FLAG,
    "suspend": _FLAG,
    "portDiscovery": _FLAG,
    "portName": _TEXT,
    "appProtocol": _TEXT,
    "timeout": _TEXT,
    "meshName": _TEXT,
    "delegation": _FLAG,
    "gateways": {"type": "array", "maxItems": 64, "items": _TEXT},
    "hosts": {"type": "array", "maxItems": 64, "items": _TEXT},
    "backends": {"type": "array", "maxItems": 64, "items": _TEXT},
    "gatewayRefs": {"type": "array", "maxItems": 64, "items": _OBJECT},
    "match": {"type": "array", "maxItems": 64, "items": _OBJECT},
}


def refused_fields(refused: dict[str, str], prefix: str) -> Schema:
    """Flagger fields canary-bot cannot honour: declared with Flagger's type (so no
    client's field validation prunes them silently) and refused by a rule that names the
    field and says what to do instead."""
    return {
        "properties": {name: _FLAGGER_TYPES.get(name, _OBJECT) for name in refused},
        "x-kubernetes-validations": [
            {
                "rule": f"!has(self.{name})",
                "message": f"{prefix}{name} is not supported: {why}",
                "fieldPath": f".{name}",
                "reason": "FieldValueForbidden",
            }
            for name, why in refused.items()
        ],
    }



_KEEP = {
    "type",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "pattern",
    "format",
    "description",
}


class SchemaError(Exception):
    """The models use something this generator cannot express."""


def _merge(base: Schema, extra: Schema) -> Schema:
    """Deep-merge ``extra`` into a copy of ``base`` (lists are replaced, except CEL rules,
    which are all kept: every rule from every source applies)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif key == "x-kubernetes-validations" and isinstance(out.get(key), list):
            out[key] = [*out[key], *(r for r in value if r not in out[key])]
        else:
            out[key] = value
    return out


MODEL_RULES["CanarySpec._refuse_flagger_only"] = _merge(
    refused_fields(canaries.REFUSED_SPEC_FIELDS, "spec."),
    {"properties": {"service": refused_fields(canaries.REFUSED_SERVICE_FIELDS, "spec.service.")}},
)


def _models(root: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """Every model reachable from ``root``'s fields (including ``root``)."""
    seen: set[type[BaseModel]] = set()
    stack = [root]
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        yield model
        for field in model.model_fields.values():
            stack.extend(_nested_models(field.annotation))


def _nested_models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        yield from _nested_models(arg)


def validator_rules(model: type[BaseModel]) -> tuple[dict[str, Schema], Schema]:
    """Schema fragments for ``model``'s validators: per field (by alias), and for the object."""
    decorators = model.__pydantic_decorators__
    fields: dict[str, Schema] = {}
    for var_name, decorator in decorators.field_validators.items():
        key = f"{model.__name__}.{var_name}"
        if key in FIELD_RULES:
            rule = FIELD_RULES[key]
        else:
            raise SchemaError(f"validator {key} has no CRD form; add it to FIELD_RULES")
        if rule is None:
            continue
        for field_name in decorator.info.fields:
            alias = model.model_fields[field_name].alias or field_name
            fields[alias] = _merge(fields.get(alias, {}), rule)
    whole: Schema = {}
    for var_name in decorators.model_validators:
        key = f"{model.__name__}.{var_name}"
        if key not in MODEL_RULES:
            raise SchemaError(f"validator {key} has no CRD form; add it to MODEL_RULES")
        whole = _merge(whole, MODEL_RULES[key])
    return fields, whole


def structural(root: type[BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of ``root`` (mode: what the API server accepts)."""
    raw = root.model_json_schema(by_alias=True, mode="validation", ref_template="{model}")
    defs: dict[str, Schema] = raw.pop("$defs", {})
    defs[root.__name__] = raw
    extras = {m.__name__: validator_rules(m) for m in _models(root)}

    def convert(node: Schema, model_name: str | None = None) -> Schema:
        if "x-duration" in node:
            bounds = node["x-duration"]
            rest = {k: v for k, v in node.items() if k != "x-duration"}
            return _merge(convert(rest), duration_schema(bounds["minimum"], bounds["maximum"]))
        if "patternProperties" in node:
            node = _pattern_keys(node)
        if "$ref" in node:
            name = node["$ref"]
            inlined = convert(defs[name], name)
            # Sibling keys of a $ref (a field description) win over the target's.
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return _merge(inlined, convert(rest)) if rest else inlined
        if "anyOf" in node or "oneOf" in node:
            return _union(node, convert)
        out: Schema = {k: v for k, v in node.items() if k in _KEEP}
        if "const" in node:  # a one-value Literal: an enum of one
            out["enum"] = [node["const"]]
        if "properties" in out:
            out["properties"] = {k: convert(v) for k, v in out["properties"].items()}
            out.pop("additionalProperties", None)  # extra="forbid": pruning does that
        elif isinstance(out.get("additionalProperties"), dict):
            out["additionalProperties"] = convert(out["additionalProperties"])
            if "propertyNames" in node:
                out = _merge(out, key_rules(node["propertyNames"]))
        elif "additionalProperties" in out:
            out.pop("additionalProperties")
        if "items" in out:
            out["items"] = convert(out["items"])
        if "description" in out:
            out["description"] = _clean(out["description"])
        if model_name is not None and model_name in extras:
            field_rules, object_rules = extras[model_name]
            for alias, rule in field_rules.items():
                out["properties"][alias] = _merge(out["properties"][alias], rule)
            out = _merge(out, object_rules)
            if model_name in PRESERVE_UNKNOWN:
                out["x-kubernetes-preserve-unknown-fields"] = True
        if (
            out.get("type") == "object"
            and "properties" not in out
            and "additionalProperties" not in out
        ):
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out

    return convert(raw, root.__name__)


# Digits per unit that CEL's duration() (int64 nanoseconds) converts without overflow,
# even all together: a longer number fails the range rule instead of erroring in it.
_CEL_SAFE_DURATION = r"^([0-9]{1,5}h)?([0-9]{1,6}m)?([0-9]{1,8}s)?([0-9]{1,11}ms)?$"


def duration_schema(minimum: float, maximum: float) -> Schema:
    """The grammar of a duration plus its range as a CEL rule (``duration()`` is Go's).

    The rule leaves what the pattern and maxLength refuse to them, so it never fails to
    evaluate; an object stored before a bound existed can then still get its status
    written (the API server ratchets unchanged fields, not CEL evaluation errors).
    """
    low, high = limits.show_duration(minimum), limits.show_duration(maximum)
    in_range = f"duration(self) >= duration('{low}') && duration(self) <= duration('{high}')"
    rule = (
        f"size(self) > {limits.MAX_DURATION_LENGTH} || !self.matches('{DURATION_PATTERN}') || "
        f"(self.matches('{_CEL_SAFE_DURATION}') && {in_range})"
    )
    return {
        **DURATION_SCHEMA,
        "x-kubernetes-validations": [
            {"rule": rule, "message": f"must be a duration from {low} to {high}"}
        ],
    }


def key_rules(names: Schema) -> Schema:
    """CEL for the keys of a map (structural schemas have no ``propertyNames``)."""
    checks = []
    if "minLength" in names:
        checks.append(f"size(k) >= {names['minLength']}")
    if "maxLength" in names:
        checks.append(f"size(k) <= {names['maxLength']}")
    if "pattern" in names:
        checks.append(f"k.matches('{names['pattern']}')")
    if not checks:
        return {}
    limits = []
    if "maxLength" in names:
        limits.append(f"at most {names['maxLength']} characters")
    if "pattern" in names:
        limits.append("lowercase letters, digits and '-'")
    return {
        "x-kubernetes-validations": [
            {
                "rule": f"self.all(k, {' && '.join(checks)})",
                "message": f"keys must be non-empty, {', '.join(limits)}",
            }
        ]
    }


def _pattern_keys(node: Schema) -> Schema:
    """pydantic writes a map with constrained keys as ``patternProperties``: fold it back."""
    ((pattern, values),) = node["patternProperties"].items()
    out = {k: v for k, v in node.items() if k != "patternProperties"}
    out["additionalProperties"] = values
    out["propertyNames"] = {**node.get("propertyNames", {}), "pattern": pattern}
    return out


def _int_or_string(options: list[Schema]) -> Schema:
    """An ``int | str`` field, its integer range and string length as one CEL rule."""
    number = next(o for o in options if o.get("type") == "integer")
    text = next(o for o in options if o.get("type") == "string")
    out: Schema = {"x-kubernetes-int-or-string": True}
    low, high = number.get("minimum"), number.get("maximum")
    short, long = text.get("minLength"), text.get("maxLength")
    if None in (low, high, short, long):
        return out
    out["x-kubernetes-validations"] = [
        {
            "rule": f"type(self) == int ? (self >= {low} && self <= {high}) "
            f": (size(self) >= {short} && size(self) <= {long})",
            "message": f"must be a number from {low} to {high} or a name of "
            f"{short} to {long} characters",
        }
    ]
    return out


def immutable_rules(fields: tuple[str, ...], required: list[str]) -> Schema:
    """Transition rules on the spec: these fields keep the value they were created with."""
    rules = []
    for name in fields:
        if name in required:
            rule = f"self.{name} == oldSelf.{name}"
        else:
            rule = (
                f"has(self.{name}) == has(oldSelf.{name}) && "
                f"(!has(self.{name}) || self.{name} == oldSelf.{name})"
            )
        rules.append(
            {
                "rule": rule,
                "message": f"{name} cannot change after the release is created; "
                "create a new CanaryRelease instead",
                "fieldPath": f".{name}",
                "reason": "FieldValueForbidden",
            }
        )
    return {"x-kubernetes-validations": rules}


def _union(node: Schema, convert: Callable[[Schema], Schema]) -> Schema:
    options = node.get("anyOf") or node.get("oneOf") or []
    nullable = any(o.get("type") == "null" for o in options)
    rest = [o for o in options if o.get("type") != "null"]
    extra = {k: v for k, v in node.items() if k in _KEEP}
    if len(rest) == 1:
        out = _merge(convert(rest[0]), convert(extra) if extra else {})
    elif sorted(o.get("type", "") for o in rest) == ["integer", "string"]:
        out = {**_int_or_string(rest), **extra}
    else:
        raise SchemaError(f"cannot express the union {options} in a structural schema")
    if nullable:
        out["nullable"] = True
    return out


def _clean(text: str) -> str:
    """Docstrings as ``kubectl explain`` shows them: plain backticks, one line."""
    return " ".join(text.replace("``", "`").split())


RELEASE_COLUMNS = [
    {"name": "Target", "type": "string", "jsonPath": ".spec.targetRef.name"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
    {"name": "FailedChecks", "type": "integer", "jsonPath": ".status.failedChecks"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Message", "type": "string", "priority": 1, "jsonPath": ".status.message"},
]

CANARY_COLUMNS = [
    {"name": "Target", "type": "string", "jsonPath": ".spec.targetRef.name"},
    {"name": "State", "type": "string", "jsonPath": ".status.state"},
    {"name": "Images", "type": "string", "jsonPath": ".status.lastImages"},
    {"name": "Outcome", "type": "string", "jsonPath": ".status.lastRevision.outcome"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Message", "type": "string", "priority": 1, "jsonPath": ".status.message"},
]


# Fields a list may select on (``fieldSelector=spec.targetRef.name=podinfo``, Kubernetes
# 1.32+): a start's checks read the releases of one Deployment or one Ingress, not all of
# the namespace's with their histories (rollout/preflight.py, rollout/ownership.py).
SELECTABLE = [{"jsonPath": ".spec.targetRef.name"}, {"jsonPath": ".spec.ingressRef.name"}]


def _definition(
    names: Schema, spec: Schema, status: Schema, columns: list[Schema], doc: str
) -> Schema:
    """A namespaced CRD of canary-bot's group with a status subresource."""
    version = {
        "name": models.VERSION,
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "additionalPrinterColumns": columns,
        "selectableFields": SELECTABLE,
        "schema": {
            "openAPIV3Schema": {
                "description": _clean(doc),
                "type": "object",
                "required": ["spec"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "spec": spec,
                    "status": status,
                },
            }
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{names['plural']}.{models.GROUP}"},
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {**names, "categories": ["all", "canarybot"]},
            "versions": [version],
        },
    }


def build_crd() -> Schema:
    """The CanaryRelease CustomResourceDefinition object."""
    spec_schema = structural(models.CanaryReleaseSpec)
    # Both lists of rules apply (``_merge`` would replace the model's with the transition rules).
    rules = immutable_rules(models.IMMUTABLE_SPEC_FIELDS, spec_schema.get("required", []))
    spec_schema["x-kubernetes-validations"] = [
        *spec_schema.get("x-kubernetes-validations", []),
        *rules["x-kubernetes-validations"],
    ]
    names = {
        "kind": models.KIND,
        "listKind": f"{models.KIND}List",
        "plural": models.PLURAL,
        "singular": models.KIND.lower(),
        "shortNames": [models.SHORT_NAME],
    }
    status = structural(models.CanaryReleaseStatus)
    return _definition(names, spec_schema, status, RELEASE_COLUMNS, models.CanaryRelease.__doc__ or "")


def build_canary_crd() -> Schema:
    """The Canary CustomResourceDefinition object."""
    names = {
        "kind": canaries.KIND,
        "listKind": f"{canaries.KIND}List",
        "plural": canaries.PLURAL,
        "singular": canaries.SINGULAR,
        "shortNames": [canaries.SHORT_NAME],
    }
    spec = structural(canaries.CanarySpec)
    status = structural(canaries.CanaryStatus)
    return _definition(names, spec, status, CANARY_COLUMNS, canaries.Canary.__doc__ or "")


HEADER = (
    "# The CanaryRelease CustomResourceDefinition.\n"
    "# Generated from rollout/models.py by hack/gen_crd.py; do not edit by hand.\n"
)
CANARY_HEADER = (
    "# The Canary CustomResourceDefinition (one Deployment under canary-bot's protection).\n"
    "# Generated from rollout/canaries.py by hack/gen_crd.py; do not edit by hand.\n"
)


# Schema keys in reading order: what a field is, then its limits, then what it holds.
_KEY_ORDER = [
    "description",
    "type",
    "format",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "nullable",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
    "required",
    "properties",
    "items",
    "additionalProperties",
]


def _ordered(node: Any, in_properties: bool = False) -> Any:
    """A copy with schema keys in ``_KEY_ORDER`` (property names keep model order)."""
    if isinstance(node, list):
        return [_ordered(item) for item in node]
    if not isinstance(node, dict):
        return node
    if in_properties:
        return {k: _ordered(v) for k, v in node.items()}
    rank = {k: i for i, k in enumerate(_KEY_ORDER)}
    keys = sorted(node, key=lambda k: rank.get(k, -1))  # non-schema keys first, as written
    return {k: _ordered(node[k], in_properties=k == "properties") for k in keys}


class _Dumper(yaml.SafeDumper):
    """No ``&id001`` anchors: every repeated piece is written out in full."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _render(crd: Schema, header: str) -> str:
    schema = crd["spec"]["versions"][0]["schema"]
    schema["openAPIV3Schema"] = _ordered(schema["openAPIV3Schema"])
    body = yaml.dump(crd, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return header + body


def render() -> str:
    """The YAML text of manifests/crds/crd.yaml (CanaryRelease)."""
    return _render(build_crd(), HEADER)


def render_canary() -> str:
    """The YAML text of manifests/crds/canaries.yaml (Canary)."""
    return _render(build_canary_crd(), CANARY_HEADER)


def outputs() -> dict[Path, str]:
    """Every file this script writes and its wanted text."""
    return {CRD_PATH: render(), CANARY_CRD_PATH: render_canary()}


def main(argv: list[str] | None = None) -> int:
    """Write the CRD, or with ``--check`` report whether the committed one is current."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the file is outdated")
    args = parser.parse_args(argv)
    stale = 0
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        if args.check:
            diff = difflib.unified_diff(
                current.splitlines(), text.splitlines(), "committed", "generated", lineterm=""
            )
            print("\n".join(diff), file=sys.stderr)
            print(f"{path} is out of date: run python hack/gen_crd.py", file=sys.stderr)
            stale = 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
