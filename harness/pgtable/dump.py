"""A host walk laid out for a person (or a script): every level, every valid descriptor with its
decoded fields, the mapped ranges coalesced, and the walker's findings. What `iopt-hil walk`
prints for a live guest."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .lpae import decode
from .walker import Leaf, Walk


@dataclass(frozen=True)
class Range:
    """Consecutive leaves whose output addresses are consecutive too, with equal attributes."""

    iova: int
    size: int
    output: int
    attrs: str


@dataclass
class TableDump:
    id: int
    ttbr: int
    ias: int
    oas: int
    granule: str
    levels: list[dict[str, Any]] = field(default_factory=list)
    ranges: list[Range] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    truncated: bool = False

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _fields(raw: int, level: int, walk: Walk) -> dict[str, Any]:
    d = decode(raw, level, walk.granule)
    out: dict[str, Any] = {"raw": raw, "kind": d.kind, "address": d.address}
    if d.kind in ("block", "page"):
        out.update(ap=d.ap, read_only=d.read_only, uxn=d.uxn, pxn=d.pxn, attr_index=d.attr_index,
                   sh=d.shareability, af=d.af, ng=d.ng, ns=d.ns, dbm=d.dbm, contiguous=d.contiguous)
    elif d.kind == "table":
        out.update(table_attrs=d.table_attrs, nstable=d.nstable)
    return out


def _attrs(leaf: Leaf) -> str:
    """What must be equal for two leaves to be one range: everything but the address."""
    d = leaf.desc
    return (f"{'ro' if d.read_only else 'rw'} ap={d.ap:#04b} uxn={int(d.uxn)} pxn={int(d.pxn)} "
            f"attridx={d.attr_index} [{leaf.memtype}] sh={d.shareability} af={int(d.af)} "
            f"ng={int(d.ng)} ns={int(d.ns)} dbm={int(d.dbm)}")


def coalesce(leaves: list[Leaf]) -> list[Range]:
    ranges: list[Range] = []
    for leaf in sorted(leaves, key=lambda l: l.iova):
        attrs = _attrs(leaf)
        last = ranges[-1] if ranges else None
        if (last is not None and last.iova + last.size == leaf.iova
                and last.output + last.size == leaf.output and last.attrs == attrs):
            ranges[-1] = Range(last.iova, last.size + leaf.size, last.output, attrs)
        else:
            ranges.append(Range(leaf.iova, leaf.size, leaf.output, attrs))
    return ranges


def dump(table_id: int, oas: int, walk: Walk) -> TableDump:
    out = TableDump(table_id, walk.ttbr, walk.ias, oas, walk.granule.name,
                    findings=list(walk.problems), truncated=walk.truncated)
    for page in sorted(walk.tables, key=lambda p: (p.level, p.iova)):
        step = walk.granule.block_size(page.level)
        entries = []
        for index in range(page.entries):
            raw = walk.raw.get(page.addr + 8 * index)
            if raw is None or not raw & 1:
                continue
            entries.append(dict(index=index, iova=page.iova + index * step,
                                entry_addr=page.addr + 8 * index, **_fields(raw, page.level, walk)))
        out.levels.append(dict(level=page.level, table=page.addr, iova=page.iova,
                               valid=page.valid, entries=entries))
    out.ranges = coalesce(walk.leaves)
    return out


def format_dump(d: TableDump) -> str:
    lines = [f"table {d.id}: {d.granule} granule, ias {d.ias}, oas {d.oas}, ttbr {d.ttbr:#x}"
             + (" (walk truncated at its budget)" if d.truncated else "")]
    for level in d.levels:
        lines.append(f"  L{level['level']} table {level['table']:#x} (iova {level['iova']:#x}, "
                     f"{level['valid']} valid)")
        for e in level["entries"]:
            if e["kind"] == "table":
                lines.append(f"    [{e['index']:3}] iova {e['iova']:#x}: table -> {e['address']:#x} "
                             f"{'NSTable ' if e['nstable'] else ''}(raw {e['raw']:#018x})")
            else:
                lines.append(f"    [{e['index']:3}] iova {e['iova']:#x}: {e['kind']} -> "
                             f"{e['address']:#x} AP={e['ap']:#04b}{' RO' if e['read_only'] else ''} "
                             f"UXN={int(e['uxn'])} PXN={int(e['pxn'])} AttrIndx={e['attr_index']} "
                             f"SH={e['sh']} AF={int(e['af'])} nG={int(e['ng'])} NS={int(e['ns'])} "
                             f"DBM={int(e['dbm'])} (raw {e['raw']:#018x})")
    lines.append(f"  mapped: {len(d.ranges)} range(s)")
    lines += [f"    {r.iova:#x}..{r.iova + r.size:#x} -> {r.output:#x} ({r.size:#x} bytes) {r.attrs}"
              for r in d.ranges]
    lines += [f"  finding: {f}" for f in d.findings] or ["  findings: none"]
    return "\n".join(lines)
