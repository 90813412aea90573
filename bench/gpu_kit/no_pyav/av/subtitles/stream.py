"""See av/__init__.py: a placeholder, not PyAV."""

from av import _Missing

SubtitleStream = _Missing
