"""lotrack: lot and dosing traceability for a GMP cell-derived biologic in a clinical trial."""

__version__ = "0.1.0"
