"""What a unit id means to a person: country names and ISO codes, and the country of a cell.

Ids are the data's keys; a forecaster reads names. Names come from the data itself (the cm
snapshot's ``country_name``/``isoab`` columns, the pgm snapshot's ``country_id``), so a
world without names (the demo) stays labelled by id rather than by a wrong real name.
Country shapes for maps are merged from PRIO-GRID cells (:mod:`ewspipe.geography.shapes`).
"""

from ewspipe.geography.names import UnitNames, unit_labels, unit_names
from ewspipe.geography.shapes import country_geometry

__all__ = ["UnitNames", "country_geometry", "unit_labels", "unit_names"]
