"""Griffe extension for the API reference: Sphinx roles in docstrings render as code.

The docstrings name other objects the Sphinx way (``:class:`secagg.errors.ParameterError```);
Markdown has no such roles, so each becomes a code span of the name it points to.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`~?([^`]+)`")


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None and ":" in obj.docstring.value:
            obj.docstring.value = ROLE.sub(r"`\1`", obj.docstring.value)
