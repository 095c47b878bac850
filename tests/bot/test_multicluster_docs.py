"""docs/multicluster.md's config example is one the front accepts, as documented."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import parse_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "multicluster.md"


def test_the_documented_front_config_loads_with_its_routes_and_rules() -> None:
    [example] = [
        block
        for block in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
        if block.startswith("clusters:")
    ]
    config = parse_config(example, str(DOC))
    assert config.cluster_names == ["prod-eu", "prod-us"]
    assert [c.name for c in config.clusters if c.default] == ["prod-us"]
    shop = config.authorization
    assert shop.rules_for("shop-web", "start", "prod-eu")[-1].groups == ["S0SHOP"]
    assert all(r.groups == ["S0SRE"] for r in shop.rules_for("shop-web", "start", "prod-us"))
