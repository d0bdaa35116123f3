"""Writing one benchmark's figures into docs/performance.md without touching the other sections.

The file is a list of ``## Section`` blocks; a section may hold ``### Subsection`` blocks (one per
database, say). A benchmark replaces its own subsection and its section's introduction and keeps
everything else as it was.
"""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
TITLE = "# Performance"


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile of ``samples`` (seconds)."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def machine() -> str:
    """nproc, memory and CPU model, for the reader to judge the figures."""
    memory = "unknown"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs (nproc), {memory} RAM, {cpu}, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def _split(text: str, marker: str) -> tuple[str, list[tuple[str, str]]]:
    """``(preamble, [(heading line, body), ...])`` for headings that start with ``marker``."""
    parts = re.split(rf"(?m)^(?={re.escape(marker)} )", text)
    preamble, blocks = parts[0], []
    for part in parts[1:]:
        heading, _, body = part.partition("\n")
        blocks.append((heading.strip(), body))
    return preamble, blocks


def write_subsection(section: str, intro: str, subsection: str, body: str, path: Path = DOC) -> None:
    """Replace ``## section`` 's introduction and its ``### subsection``; keep every other block."""
    text = path.read_text() if path.exists() else f"{TITLE}\n\n"
    preamble, sections = _split(text, "##")
    heading = f"## {section}"
    current = next((b for h, b in sections if h == heading), "")
    _intro, subsections = _split(current, "###")
    sub_heading = f"### {subsection}"
    new_sub = f"{body.strip()}\n\n"
    if any(h == sub_heading for h, _ in subsections):
        subsections = [(h, new_sub if h == sub_heading else b) for h, b in subsections]
    else:
        subsections.append((sub_heading, new_sub))
    new_section = f"\n{intro.strip()}\n\n" + "".join(f"{h}\n\n{b.strip()}\n\n" for h, b in subsections)
    if any(h == heading for h, _ in sections):
        sections = [(h, new_section if h == heading else b) for h, b in sections]
    else:
        sections.append((heading, new_section))
    out = preamble.rstrip() + "\n\n" + "".join(f"{h}\n{b.rstrip()}\n\n" for h, b in sections)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(out.rstrip() + "\n")
