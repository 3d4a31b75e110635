"""hub: a regional interoperability hub for early, coordinated support for children."""

__version__ = "0.1.0"
