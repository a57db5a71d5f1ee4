"""xrdid: space group, crystal system and phases from a powder X-ray diffraction pattern."""

__version__ = "0.1.0"
