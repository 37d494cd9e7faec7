"""arborist's Python API: `import arborist; arborist.run(...)`. orchestrator/api.py documents it."""

from orchestrator.api import (
    ApiError,
    LedgerTables,
    Summary,
    export_log,
    import_log,
    read,
    report,
    resume,
    run,
    status,
    summary,
)

__all__ = [
    "ApiError", "LedgerTables", "Summary", "export_log", "import_log", "read", "report", "resume", "run", "status",
    "summary",
]
