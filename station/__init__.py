"""borne: the edge controller of one car-sharing station."""

__version__ = "0.1.0"
