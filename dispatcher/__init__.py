"""dispatcher: SMS and e-mail marketing that cleans lists, respects local time, never doubles a send."""

__version__ = "0.1.0"
