"""How an alert names a unit: "Ukraine (UKR, 117)" rather than "country_id=117".

An alert is read by a person on call; the id stays in the text (and in the alert's offender
and details) so it can still be looked up, and a world without names keeps the id form.
"""

from __future__ import annotations

from ewspipe.geography import UnitNames

__all__ = ["alert_unit"]


def alert_unit(names: UnitNames | None, unit: int) -> str | None:
    """"Ukraine (UKR, 117)" for a named country, "cell 202022 (Ukraine)" for a cell of a
    named country; None when the data give no name (the caller keeps its id wording)."""
    if names is None:
        return None
    unit = int(unit)
    country = unit if names.level == "cm" else names.country.get(unit)
    name = names.name.get(country) if country is not None else None
    if name is None:
        return None
    if names.level != "cm":
        return names.label(unit)
    iso = names.iso.get(unit)
    return f"{name} ({iso}, {unit})" if iso else f"{name} ({unit})"
