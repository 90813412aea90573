"""See av/__init__.py: a placeholder, not PyAV."""

from av import MESSAGE, _Missing

InputContainer = OutputContainer = _Missing
__all__ = ["MESSAGE", "InputContainer", "OutputContainer"]
