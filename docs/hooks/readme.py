"""mkdocs hook: the repository's README.md as the site's readme.md page.

The README stays the one source (GitHub shows it at the root); on the site its links into
``docs/`` point at the pages themselves.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"


def on_page_read_source(page: Any, config: Any) -> str | None:
    if page.file.src_uri != "readme.md":
        return None
    return re.sub(r"\]\(docs/", "](", README.read_text(encoding="utf-8"))
