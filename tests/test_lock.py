"""The environment the suite runs in is the locked one: every package constraints.txt pins for
this platform is installed, at exactly the pinned version (scripts/_env.sh installs with -c)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parents[1] / "constraints.txt"


def _pins() -> dict[str, str]:
    pins = {}
    for raw in LOCK.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        name, _, version = requirement.strip().partition("==")
        pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_locked_package_is_installed_at_its_pinned_version() -> None:
    pins = _pins()
    assert len(pins) > 50, f"{LOCK} pins only {len(pins)} packages: is it the lock?"
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    wrong = {name: (pinned, installed.get(name)) for name, pinned in pins.items() if installed.get(name) != pinned}
    assert not wrong, (
        f"installed versions differ from {LOCK.name} (name: (locked, installed)): {wrong}. "
        "Re-run ./scripts/test, which installs the lock, or ./scripts/lock to move the lock."
    )
