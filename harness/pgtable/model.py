"""A Python model of the translations a table should hold, and the comparison of a host walk
against it, worded so a kernel developer can act on a failure without rerunning."""
from __future__ import annotations

from dataclasses import dataclass, field

from .lpae import Granule
from .walker import Walk


def table_span(granule: Granule, size: int) -> int:
    """Bytes one table of `size` leaves covers (a leaf table of pages, or a table of blocks)."""
    return size * (granule.size // 8)


def calls(granule: Granule, iova: int, size: int, count: int) -> list[tuple[int, int]]:
    """(iova, pgcount) of each call a caller makes to map or unmap `count` leaves of `size` from
    `iova`: io-pgtable-arm handles at most the entries left in one table per call
    (`arm_lpae_max_entries`), so each call ends at the end of a table or of the request."""
    out, span = [], table_span(granule, size)
    while count:
        n = min(count, (span - iova % span) // size)
        out.append((iova, n))
        iova, count = iova + n * size, count - n
    return out


@dataclass(frozen=True)
class Mapping:
    iova: int
    size: int  # one leaf
    paddr: int
    prot: int


@dataclass
class TableModel:
    leaves: dict[int, Mapping] = field(default_factory=dict)

    def map(self, iova: int, paddr: int, pgsize: int, count: int, prot: int) -> None:
        for i in range(count):
            self.leaves[iova + i * pgsize] = Mapping(iova + i * pgsize, pgsize, paddr + i * pgsize, prot)

    def unmap(self, iova: int, size: int) -> None:
        for start in [a for a in self.leaves if iova <= a < iova + size]:
            del self.leaves[start]

    def free(self, iova: int, size: int) -> bool:
        end = iova + size
        return not any(m.iova < end and iova < m.iova + m.size for m in self.leaves.values())


def compare(walk: Walk, model: TableModel, limit: int = 20) -> list[str]:
    """Every difference between the walked leaves and the model, with the descriptor bits."""
    problems = list(walk.problems)
    found = {leaf.iova: leaf for leaf in walk.leaves}
    for iova, want in sorted(model.leaves.items()):
        leaf = found.pop(iova, None)
        if leaf is None:
            problems.append(f"iova {iova:#x}: expected a {want.size:#x} leaf -> {want.paddr:#x}, "
                            f"walk found nothing (covering leaf: "
                            f"{getattr(walk.leaf_at(iova), 'describe', lambda: 'none')()})")
        elif (leaf.size, leaf.output) != (want.size, want.paddr):
            problems.append(f"iova {iova:#x}: expected {want.size:#x} -> {want.paddr:#x}, "
                            f"walk found {leaf.describe()}")
    for leaf in found.values():
        problems.append(f"unexpected leaf: {leaf.describe()}")
    return problems[:limit] + ([f"... and {len(problems) - limit} more"] if len(problems) > limit else [])


@dataclass(frozen=True)
class TableDiff:
    added: dict[int, int]
    removed: dict[int, int]
    changed: dict[int, tuple[int, int]]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def describe(self, limit: int = 10) -> str:
        rows = ([f"+ {a:#x}: {v:#018x}" for a, v in self.added.items()]
                + [f"- {a:#x}: {v:#018x}" for a, v in self.removed.items()]
                + [f"~ {a:#x}: {o:#018x} -> {n:#018x}" for a, (o, n) in self.changed.items()])
        return "\n".join(rows[:limit]) + (f"\n... {len(rows) - limit} more" if len(rows) > limit else "")


def diff(before: Walk, after: Walk) -> TableDiff:
    """Descriptor-level difference between two walks (addresses are guest-physical)."""
    added = {a: v for a, v in after.raw.items() if a not in before.raw}
    removed = {a: v for a, v in before.raw.items() if a not in after.raw}
    changed = {a: (v, after.raw[a]) for a, v in before.raw.items()
               if a in after.raw and after.raw[a] != v}
    return TableDiff(added, removed, changed)
