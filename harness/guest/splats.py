"""Kernel-message classifier: turns console lines into splat events (WARNING, BUG, Oops, panic,
KASAN/KFENCE/KCSAN/UBSAN reports, lockdep, RCU stalls, hung tasks, kmemleak).

Each pattern sits beside the kind it names. A splat's text runs from its first line to its
`---[ end trace ... ]---` (or to the next splat, or a bound), so a failure can quote it whole.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

# printk prefix: optional "[    1.234567]" timestamp and optional "[  T12]"/"[  C0]" caller id.
_PREFIX = re.compile(r"^\s*(?:\[\s*\d+\.\d+\])?\s*(?:\[\s*[TC]\d+\])?\s*")

# Order matters: the first match names the splat (lockdep's "WARNING: possible ..." before WARNING).
KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("lockdep", re.compile(r"^WARNING: (possible (circular|recursive) locking|inconsistent lock state"
                           r"|suspicious RCU usage|lock held when returning)|^BUG: (sleeping function"
                           r" called from invalid context|scheduling while atomic|MAX_LOCKDEP)")),
    ("kasan", re.compile(r"^BUG: KASAN: ")),
    ("kfence", re.compile(r"^BUG: KFENCE: ")),
    ("kcsan", re.compile(r"^BUG: KCSAN: ")),
    ("ubsan", re.compile(r"^UBSAN: ")),
    ("kmemleak", re.compile(r"^kmemleak: \d+ new suspected memory leaks")),
    ("rcu-stall", re.compile(r"^rcu: INFO: \S+ (self-)?detected stalls?|^INFO: rcu_\S+ (self-)?detected stall")),
    ("hung-task", re.compile(r"^INFO: task \S+ blocked for more than \d+ seconds")),
    # "WARNING: CPU: 0 PID: 1 at file:line func+0x..", or 7.x's "WARNING: file:line at func+0x..";
    # \S+ (no spaces) keeps the match linear on a hostile multi-kilobyte line.
    ("warning", re.compile(r"^WARNING: (CPU: \d+ PID: \d+ at |\S+ at \S+\+0x)")),
    ("oops", re.compile(r"^Internal error: |^Unable to handle kernel |^Oops")),
    ("bug", re.compile(r"^(kernel BUG at |BUG: )")),
    ("panic", re.compile(r"^Kernel panic - not syncing")),
    ("iommu-fault", re.compile(r"^arm-smmu-v3 \S+: event: F_\w+ |^arm-smmu-v3 \S+: event 0x[0-9a-f]+ received")),
    ("rust-panic", re.compile(r"^rust_kernel: panicked at ")),
]
END_TRACE = re.compile(r"---\[ end (trace [0-9a-f]+|Kernel panic)")
MAX_LINES = 200


@dataclass(frozen=True)
class Splat:
    kind: str
    title: str  # the first line, prefix stripped
    start: int  # index of the first line in the sequence given to `classify`
    text: str

    def summary(self) -> str:
        return f"{self.kind}: {self.title}"


def strip_prefix(line: str) -> str:
    return _PREFIX.sub("", line, count=1)


def kind_of(line: str) -> str | None:
    body = strip_prefix(line)
    for kind, pattern in KINDS:
        if pattern.search(body):
            return kind
    return None


def classify(lines: Sequence[str]) -> list[Splat]:
    """Every splat in `lines`, in order."""
    splats: list[Splat] = []
    i = 0
    while i < len(lines):
        kind = kind_of(lines[i])
        if kind is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and end - i < MAX_LINES:
            if END_TRACE.search(lines[end - 1]) and end - 1 > i:
                break
            if kind_of(lines[end]) is not None and not _continues(kind, lines[end]):
                break
            end += 1
        body = [strip_prefix(line) for line in lines[i:end]]
        splats.append(Splat(kind, body[0], i, "\n".join(body)))
        i = end
    return splats


def _continues(kind: str, line: str) -> bool:
    """'Unable to handle kernel ...' and 'kernel BUG at' are followed by their own
    'Internal error: Oops' line, and a Rust panic by the BUG it turns into: one report each."""
    nxt = kind_of(line)
    return ((kind in ("oops", "bug") and nxt == "oops")
            or (kind == "rust-panic" and nxt in ("bug", "oops"))
            or (kind == "iommu-fault" and nxt == "iommu-fault" and "event: F_" in line))


def matches(splat: Splat, kind: str, pattern: str | None = None) -> bool:
    return splat.kind == kind and (pattern is None or re.search(pattern, splat.text) is not None)


def matching(splats: Iterable[Splat], kind: str, pattern: str | None = None) -> list[Splat]:
    return [s for s in splats if matches(s, kind, pattern)]
