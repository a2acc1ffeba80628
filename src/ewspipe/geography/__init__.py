"""What a unit id means to a person: country names and ISO codes, and the country of a cell.

Ids are the data's keys; a forecaster reads names. Names come from the data itself (the cm
snapshot's ``country_name``/``isoab`` columns, the pgm snapshot's ``country_id``); real data
without them (VIEWS ids) falls back to the global PRIO-GRID table's country list, while the
demo world, whose ids are not VIEWS ids, stays labelled by id rather than by a wrong name.
Country shapes for maps are merged from PRIO-GRID cells (:mod:`ewspipe.geography.shapes`).
"""

from ewspipe.geography.names import UnitNames, unit_labels, unit_names
from ewspipe.geography.shapes import country_geometry

__all__ = ["UnitNames", "country_geometry", "unit_labels", "unit_names"]
