"""Reports from a run's JUnit XML: a human summary (terminal and Markdown) and KCIDB JSON.

JUnit is what pytest writes (with the provenance as suite properties); everything here is
derived from it, so a report can be remade from an old results directory.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import junitparser
from kcidb_io.schema import LATEST

from ..build.arch import ARM64 as ARCH

ORIGIN = "iopt_hil"


@dataclass(frozen=True)
class CaseResult:
    name: str  # file::test[param]
    outcome: str  # passed, failed, error, skipped
    seconds: float
    message: str
    text: str


def _suites(xml: junitparser.JUnitXml | junitparser.TestSuite) -> list[junitparser.TestSuite]:
    """pytest writes one <testsuite>, possibly inside <testsuites>."""
    return [xml] if isinstance(xml, junitparser.TestSuite) else list(xml)


def read_junit(path: Path) -> tuple[list[CaseResult], dict[str, str]]:
    cases, props = [], {}
    for suite in _suites(junitparser.JUnitXml.fromfile(str(path))):
        props.update({p.name: p.value for p in suite.properties()})  # type: ignore[no-untyped-call]
        for case in suite:
            outcome, message, text = "passed", "", ""
            for result in case.result:
                outcome = {"Failure": "failed", "Error": "error", "Skipped": "skipped"}.get(
                    type(result).__name__, outcome)
                message, text = result.message or "", result.text or ""
            name = f"{case.classname.replace('.', '/')}.py::{case.name}" if case.classname else case.name
            cases.append(CaseResult(name, outcome, float(case.time or 0), message, text))
    return cases, props


def counts(cases: list[CaseResult]) -> dict[str, int]:
    out = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for case in cases:
        out[case.outcome] += 1
    return out


def mailing_list_line(cases: list[CaseResult], props: dict[str, str]) -> str:
    c = counts(cases)
    selection = props.get("selection", "")
    scope = f"; {selection}" if selection.startswith("granule") else ""
    return (f"Tested-with: iopt-hil ({c['passed']} io_pgtable tests passed, {c['skipped']} skipped{scope}) "
            f"on {props.get('tree', '?')}, kernel {props.get('kernel_release', '?')} "
            f"(config {props.get('fragments', '?')}), "
            f"QEMU {props.get('toolchain.qemu-system-arm', '?')}, "
            f"rustc {props.get('toolchain.rustc', '?')}, clang {props.get('toolchain.clang', '?')}")


_SECTION = re.compile(r"^[-=_]+ (.+?) [-=_]+$", re.M)  # however narrow the terminal was


def split_sections(text: str) -> tuple[str, dict[str, str]]:
    """A pytest failure text -> (traceback, {section name: content}) for the named sections the
    plugin adds (guest console, host walk)."""
    parts = _SECTION.split(text)
    return parts[0], {parts[i]: parts[i + 1].strip("\n") for i in range(1, len(parts) - 1, 2)}


def failure_excerpt(case: CaseResult, lines: int = 30) -> list[str]:
    """Markdown for one failure: the assertion, the walker's finding, the console's tail."""
    body, sections = split_sections(case.text or case.message)
    errors = [line for line in body.splitlines() if line.startswith("E ")]
    out = ["```", "\n".join((errors or body.splitlines())[-lines:]), "```", ""]
    for name, content in sections.items():
        if content.strip() in ("", "(nothing)"):
            continue
        keep = content.splitlines()
        keep = keep[:lines] if "walk" in name else keep[-lines:]  # walk: top; console: tail
        out += [f"**{name}**", "", "```", "\n".join(keep), "```", ""]
    return out


def summary_markdown(cases: list[CaseResult], props: dict[str, str], excerpt_lines: int = 30) -> str:
    c = counts(cases)
    lines = ["# iopt-hil results", "",
             f"Kernel {props.get('kernel_release', '?')} from {props.get('tree', '?')} "
             f"(fragments {props.get('fragments', '?')}, build id {props.get('build_id', '?')})", "",
             f"io_pgtable API: {props.get('api_generation') or '?'}; build root: "
             f"{props.get('build_root') or '?'}", "",
             f"**{c['passed']} passed, {c['failed'] + c['error']} failed, {c['skipped']} skipped**", ""]
    bad = [case for case in cases if case.outcome in ("failed", "error")]
    for case in bad:
        lines += [f"## {case.outcome.upper()}: `{case.name}`", "", case.message.splitlines()[0]
                  if case.message else "", ""] + failure_excerpt(case, excerpt_lines)
    if not bad and c["passed"]:
        lines += ["Everything passed. For the patch mail:", "", "    " + mailing_list_line(cases, props), ""]
    return "\n".join(lines)


def _id(text: str) -> str:
    return re.sub(r"[^\x21-\x7e]", "_", text)


def kcidb(cases: list[CaseResult], props: dict[str, str]) -> dict[str, Any]:
    """A KCIDB (latest schema) report: one checkout, one build, one test per case."""
    checkout = f"{ORIGIN}:{_id(props.get('tree', 'unknown'))}"
    build = f"{ORIGIN}:{_id(props.get('build_key', 'unknown'))}"
    status = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP"}
    data: dict[str, Any] = {
        "version": {"major": LATEST.major, "minor": LATEST.minor},
        "checkouts": [{"id": checkout, "origin": ORIGIN, "tree_name": props.get("tree", "")[:200]}],
        "builds": [{"id": build, "checkout_id": checkout, "origin": ORIGIN, "architecture": ARCH.name,
                    "config_name": props.get("fragments", ""), "compiler": props.get("toolchain.clang", ""),
                    "misc": {k: v for k, v in props.items() if k.startswith("toolchain.")}}],
        "tests": [{"id": f"{build}:{_id(case.name)}", "build_id": build, "origin": ORIGIN,
                   "path": "iopt_hil." + re.sub(r"[^A-Za-z0-9_-]+", "_", case.name).strip("_"),
                   "status": status[case.outcome], "duration": case.seconds,
                   "environment": {"comment": "QEMU virt,iommu=smmuv3 (TCG)"}}
                  for case in cases],
    }
    LATEST.validate(data)
    return data


def write_reports(junit: Path, out_dir: Path) -> tuple[str, Path, Path]:
    """summary.md and kcidb.json next to the JUnit file; returns the summary text too."""
    cases, props = read_junit(junit)
    text = summary_markdown(cases, props)
    (out_dir / "summary.md").write_text(text)
    (out_dir / "kcidb.json").write_text(json.dumps(kcidb(cases, props), indent=1))
    return text, out_dir / "summary.md", out_dir / "kcidb.json"


def add_properties(junit: Path, props: dict[str, str]) -> None:
    """Provenance as suite properties, also when pytest-xdist workers could not record them."""
    xml = junitparser.JUnitXml.fromfile(str(junit))
    for suite in _suites(xml):
        have = {p.name for p in suite.properties()}  # type: ignore[no-untyped-call]
        for key, value in props.items():
            if key not in have:
                suite.add_property(key, value)
    xml.write(str(junit))
