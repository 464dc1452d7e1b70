"""A fresh clone installs anywhere and leaves nothing untracked after a run."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pinned_requirements_name_no_machine_specific_index_or_wheel_directory():
    options = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("-")]
    assert options == []
    header = (ROOT / "requirements.in").read_text()
    assert "--no-emit-index-url" in header and "--no-emit-find-links" in header


def test_gitignore_covers_the_embedded_sqlite_database_and_its_wal_files():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {"flashstock.db", "flashstock.db-wal", "flashstock.db-shm"} <= set(ignored)
