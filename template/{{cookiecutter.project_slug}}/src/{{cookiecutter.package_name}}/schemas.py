"""Field types the tasks share; a task's schema is its own typed signature (signature_schema.py)."""
from typing import Annotated

from pydantic import Field

Amount = Annotated[int, Field(ge=-1_000_000_000_000, le=1_000_000_000_000)]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]   # idempotency keys
Text = Annotated[str, Field(max_length=10_000)]
EmailAddress = Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")]
