"""The study's registered analyses, one module per part of the study. Importing this package registers
them all (``study.registry.ANALYSES``)."""

from . import core, exploration, four_factor, generation, holes, metrics, toolbox  # noqa: F401
