"""The rules of the domain, one module per capability. No Click, no printing, no PDF."""
