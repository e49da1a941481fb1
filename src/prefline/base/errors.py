"""One exception type for every user-facing failure.

The CLI turns a :class:`PreflineError` into one sentence on stderr and a non-zero exit,
so raise it with a message that names the file, line and field and says what was expected.
"""

from __future__ import annotations


class PreflineError(Exception):
    """A problem the user can fix: bad input, missing model, unreachable database."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.message = message
        self.path, self.line, self.field = path, line, field
