"""Words for commands whose feature has not landed yet: each says so plainly, and is removed
when its feature lands."""

from __future__ import annotations

NOT_YET = "{what} isn't available yet — it's on its way."
