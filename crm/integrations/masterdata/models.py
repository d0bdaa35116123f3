"""Import runs (with their checkpoint), per-row errors, and the fingerprints that make re-imports cheap."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from crm.db import Base, UTCDateTime, utcnow

RUN_STATUSES = ("running", "completed", "failed")
ROW_SEVERITIES = ("rejected", "flagged")


class ImportRun(Base):
    """One import of one file. The offsets are the checkpoint: everything before them is committed.

    At most one ``running`` row per file hash (a partial unique index): together with the run lock in
    ``crm.integrations.masterdata.importer`` it keeps two imports of the same file from running at once.
    """

    __tablename__ = "import_runs"
    __table_args__ = (
        Index("uq_import_runs_running_sha256", "file_sha256", unique=True,
              sqlite_where=text("status = 'running'"), postgresql_where=text("status = 'running'")),
        Index("ix_import_runs_sha256", "file_sha256", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(20), nullable=False)  # "nppes"
    filename: Mapped[str] = mapped_column(String(300), nullable=False)
    file_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    file_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="running")
    # The checkpoint: the byte just after the last committed row, and how many rows/lines that is.
    byte_offset: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    row_offset: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    line_offset: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rejected: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    flagged: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    resumed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # how many times it was resumed
    error: Mapped[str | None] = mapped_column(Text)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_label: Mapped[str] = mapped_column(String(200), nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    checkpoint_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ImportRowError(Base):
    """A row that was rejected, or imported with a flag, with the field and the reason."""

    __tablename__ = "import_row_errors"
    __table_args__ = (Index("ix_import_row_errors_run", "run_id", "row_number", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("import_runs.id"), nullable=False)
    row_number: Mapped[int] = mapped_column(Integer, nullable=False)  # 1 = the first row after the header
    line_number: Mapped[int] = mapped_column(Integer, nullable=False)  # physical line where the row starts
    npi: Mapped[str | None] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10), nullable=False)  # rejected | flagged
    field: Mapped[str] = mapped_column(String(120), nullable=False)
    reason: Mapped[str] = mapped_column(String(400), nullable=False)
    # An excerpt of the offending value; never for contact data (phone, address).
    value: Mapped[str | None] = mapped_column(String(200))


class ImportFingerprint(Base):
    """The digest of the source row last applied for one source key (an NPI).

    A re-import compares the row's digest with this one and skips unchanged rows without validating
    or loading the record. The digest also covers the mapping version (taxonomy table, importer
    rules), so a new mapping re-applies every row.
    """

    __tablename__ = "import_fingerprints"

    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    source_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    digest: Mapped[str] = mapped_column(String(32), nullable=False)
    run_id: Mapped[int] = mapped_column(Integer, nullable=False)  # the run that last applied it
