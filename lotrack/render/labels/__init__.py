"""Labels: a template and a label's data laid out once, then drawn as PDF, PNG, SVG or ZPL."""
