"""Detector methods as plug-ins over one scoring shell: one folder per method, one registry (``registry``)."""
