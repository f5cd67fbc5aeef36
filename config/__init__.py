"""The default configuration: the example resource catalog and access policies.

A package so that the wheel carries these files (pyproject.toml, package-data);
core/settings.py finds them beside the code wherever the program is installed.
"""
