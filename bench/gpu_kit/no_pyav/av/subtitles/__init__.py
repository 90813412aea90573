"""See av/__init__.py: a placeholder, not PyAV."""
