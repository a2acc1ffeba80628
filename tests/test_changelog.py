"""The product's changelog keeps the Keep a Changelog shape and has the package's version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_changelog_has_unreleased_and_the_package_version():
    text = (ROOT / "docs" / "CHANGELOG.md").read_text(encoding="utf-8")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    releases = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.M)
    assert releases[0] == ("Unreleased", "")
    assert (version, releases[1][1]) == releases[1] and releases[1][1], \
        f"docs/CHANGELOG.md: add a dated '## [{version}] - YYYY-MM-DD' section"
    kinds = set(re.findall(r"^### (.+)$", text, re.M))
    assert kinds <= KINDS, f"docs/CHANGELOG.md: unknown section kinds {kinds - KINDS}"
