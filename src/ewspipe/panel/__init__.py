"""Panels indexed by (month_id, unit): schema, geometry, sources and snapshots."""

from ewspipe.panel.schema import Level, MissingPolicy, Panel, PanelSpec, validate_panel

__all__ = ["Level", "MissingPolicy", "Panel", "PanelSpec", "validate_panel"]
