"""Generate docs/configuration.md from the pydantic models, so the reference never drifts.

Usage: python hack/gen_config_docs.py [--check]
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.config import BotConfig, Environment  # noqa: E402
from rollout.models import CanaryReleaseSpec  # noqa: E402

OUTPUT = ROOT / "docs" / "configuration.md"

INTRO = """# Configuration reference

Generated from the code by `python hack/gen_config_docs.py`; do not edit by hand.

canary-bot reads secrets and endpoints from the environment and everything else from one
YAML file (path in `CANARY_BOT_CONFIG` or `canary-bot run --config`). Check a file with
`canary-bot check-config <path>`. A CanaryRelease's `spec` (created by `/canary start`, or
applied with kubectl) is described at the end; its `analysis` block is Flagger's.
"""


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Annotated:  # bounds are in the CRD, not here
        return _type_name(typing.get_args(annotation)[0])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + (
            " (optional)" if type(None) in args else ""
        )
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {_type_name(args[0])} to {_type_name(args[1])}" if args else "map"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    name = getattr(annotation, "__name__", str(annotation))
    return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
        name, name
    )


def _default(field: FieldInfo) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
        if value is None or value == "":
            return ""
        if hasattr(value, "get_secret_value"):
            return ""
        return f"`{value}`"
    if field.default_factory is not None:
        return ""
    return "required"


def _nested(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_nested(arg))
    return found


def _describe(model: type[BaseModel], seen: set[type[BaseModel]], out: list[str]) -> None:
    if model in seen:
        return
    seen.add(model)
    doc = " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())
    out += [f"### {model.__name__}", "", doc, "", "| field | type | default |", "|---|---|---|"]
    children: list[type[BaseModel]] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        out.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} |")
        children += _nested(field.annotation)
    out.append("")
    for child in children:
        _describe(child, seen, out)


def render() -> str:
    """The whole reference as Markdown."""
    out = [INTRO, "## Environment", "", "| variable | meaning |", "|---|---|"]
    for name, field in Environment.model_fields.items():
        meaning = field.description or ""
        out.append(f"| `{name.upper()}` | {meaning} |")
    out += ["", "## Config file", ""]
    _describe(BotConfig, set(), out)
    out += ["## CanaryRelease spec", ""]
    _describe(CanaryReleaseSpec, set(), out)
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    """Write (or with --check, compare) docs/configuration.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date; run python hack/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
