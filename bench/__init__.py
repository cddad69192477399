"""The facets benchmark (``python -m bench.run``): warm, cold, 304, raw and floor, side by side."""
