"""emobench's version (a leaf, so records and environments can name it without importing the package)."""

__version__ = "0.1.0"
