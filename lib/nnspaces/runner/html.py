"""The runner's HTML pages (a run's report, a sweep's report): one jinja2 environment over
``templates/`` (:data:`nnspaces.paths.TEMPLATES`), autoescaped, failing on an undefined name."""

from __future__ import annotations

import datetime as _dt
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from ..files import atomic_write
from ..paths import TEMPLATES


@cache
def environment() -> jinja2.Environment:
    """The templates' environment: autoescaped, ``StrictUndefined``, block tags trimmed."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def now() -> str:
    """The local time a page is written, as pages show it (``2026-12-04 15:02 UTC``)."""
    return _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def write_page(path: str | Path, template: str, **context: Any) -> Path:
    """Render ``template`` with ``context`` to ``path`` (atomically) and return ``path``."""
    return atomic_write(path, environment().get_template(template).render(**context))
