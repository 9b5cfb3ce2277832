"""`iopt-hil`: turn argv into requests and call the pipeline. sys.exit lives only here."""
from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn,
                           TimeElapsedColumn)

from .build.buildroot import remove_tree
from .build.cachedir import cache_root
from .build.pipeline import BuildRequest, Prepared, prepare
from .build.progress import OnSteps, StepProgress, clock
from .errors import ConfigError, HarnessError
from .guest.machine import Machine, sweep_stale
from .resources import checkout, results_default, suite_dir
from .timeline import TIMELINE, read as read_timeline
from .workflows.options import BUILD_OPTIONS, GRANULE, RESULTS, SuiteOptions, build_args


def log(msg: str) -> None:
    print(f"[iopt-hil {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _request(args: argparse.Namespace) -> BuildRequest:
    return BuildRequest(tree=args.tree, toolchain=args.toolchain, fragments=tuple(args.kconfig))


class TerminalBar:
    """Long steps as a rich progress bar: steps done of those expected, elapsed, time left.
    Only on a terminal; elsewhere the build prints one plain line every 15 s instead."""

    def __init__(self) -> None:
        self._bars: dict[str, tuple[Progress, TaskID]] = {}

    def __call__(self, p: StepProgress) -> None:
        if p.phase not in self._bars:
            bar = Progress(TextColumn("\\[iopt-hil] {task.description}"), BarColumn(),
                           MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[left]}"))
            bar.start()
            self._bars[p.phase] = (bar, bar.add_task(p.phase, total=p.total, left=""))
        bar, task = self._bars[p.phase]
        left = f"about {clock(p.eta)} left" if p.eta is not None else ""
        bar.update(task, completed=p.done, total=p.done if p.finished else p.total, left=left)
        if p.finished:
            bar.stop()
            del self._bars[p.phase]


def _prepare(args: argparse.Namespace) -> Prepared:
    """The build with live progress: a bar on a terminal, plain periodic lines otherwise."""
    on_steps: OnSteps | None = TerminalBar() if sys.stdout.isatty() else None
    return prepare(_request(args), log, on_steps)


def _plugin_args(args: argparse.Namespace) -> list[str]:
    return build_args(args.tree, args.toolchain, args.kconfig)


def _rootdir() -> Path:
    return checkout() or Path.cwd()


def cmd_build(args: argparse.Namespace) -> int:
    build = _prepare(args).build
    for key, value in build.provenance().items():
        print(f"{key}: {value}")
    print(f"Image: {build.image}\nvmlinux: {build.vmlinux}\nmodule: {build.module}\nlog: {build.log}")
    return 0


def _names_tests(pytest_args: list[str]) -> bool:
    """Test files or directories on the command line replace the default set."""
    return any(not a.startswith("-") and Path(a.split("::")[0]).exists() for a in pytest_args)


def _pytest(paths: list[str], extra: list[str], prepared: Prepared | None = None) -> int:
    from .plugin.runner import run_pytest

    return run_pytest([*paths, *extra], _rootdir(), prepared)


def cmd_run(args: argparse.Namespace) -> int:
    from .results.reports import add_properties, write_reports

    started, wall = time.monotonic(), time.time()
    TIMELINE.clear()
    results = _results(args, results_default())  # refuse a bad --results before building
    with TIMELINE.phase("build (all)"):
        prepared = _prepare(args)  # build up front, with progress, before pytest
    results.mkdir(parents=True, exist_ok=True)
    for stale in ("junit.xml", "summary.md", "kcidb.json", "provenance.json", "timings.json"):
        (results / stale).unlink(missing_ok=True)  # a run that dies early must not leave old ones
    for stale_worker in results.glob("gw*/timings.json"):  # an earlier parallel run's guests
        stale_worker.unlink(missing_ok=True)
    shutil.copyfile(prepared.build.log, results / "build.log")
    from .plugin.runner import default_guests

    guests = default_guests(args.pytest_args, _names_tests(args.pytest_args))
    # worksteal: an idle guest takes tests queued for a busy one (the race test alone is ~15 s);
    # with xdist's default split the last guest finished ~6 s after the others
    parallel = ["-n", str(guests), "--dist", "worksteal"] if guests else []
    log(f"running the guest suite on {prepared.build.identity.describe()} (results: {results})"
        + (f", {guests} guests in parallel (-n 0: one guest)" if guests else ""))
    with TIMELINE.phase("pytest session (all)"):
        rc = _pytest([] if _names_tests(args.pytest_args) else [str(suite_dir())],
                     _plugin_args(args) + [f"--results={results}",
                                           f"--junitxml={results / 'junit.xml'}"]
                     + [f"--granule={g}" for g in args.granule] + parallel + args.pytest_args,
                     prepared)
    if (results / "junit.xml").exists():
        with TIMELINE.phase("reports"):
            selection = " ".join(f"granule={g}" for g in args.granule) or "whole suite"
            add_properties(results / "junit.xml",
                           dict(prepared.build.provenance(), selection=selection))
            text, summary, kcidb = write_reports(results / "junit.xml", results)
        print("\n" + text)
        log(f"reports: {summary}, {kcidb}, {results / 'junit.xml'}")
    TIMELINE.add("run (all)", wall, time.monotonic() - started)
    for worker in sorted(results.glob("gw*/timings.json")):  # pytest-xdist: each guest's own
        for p in read_timeline(worker):
            TIMELINE.add(f"{worker.parent.name}: {p.name}", p.start, p.seconds, p.count, p.cpu,
                         p.host_cpu)
    TIMELINE.write(results / "timings.json")
    log(f"done in {time.monotonic() - started:.0f} s, pytest exit status {rc}; "
        f"tested {prepared.build.identity.describe()} ({prepared.build.release})")
    return rc


def cmd_selftest(args: argparse.Namespace) -> int:
    root = checkout()
    if root is None:
        raise HarnessError("selftest runs the harness's own tests: it needs a source checkout")
    # `selftest tests/unit`: only the host-only tests, which need no build and no guest
    paths = [] if _names_tests(args.pytest_args) else [str(root / "tests")]
    return _pytest(paths, _plugin_args(args) + args.pytest_args)


def cmd_shell(args: argparse.Namespace) -> int:
    if args.gdb and "gdb" not in args.kconfig:
        args.kconfig = [*args.kconfig, "gdb"]  # debug info and the kernel's gdb helpers
    if args.detach or args.name:
        return _shell_detached(args)
    prepared = _prepare(args)
    with Machine(prepared.build, prepared.root, progress=log, gdb=args.gdb) as machine:
        ssh = machine.require_ssh()
        assert machine.info is not None
        log(f"guest {machine.info.release} ready in {machine.info.seconds_to_ready:.1f} s")
        if machine.gdb_port:
            log(f"gdb stub: 127.0.0.1:{machine.gdb_port}, symbols {prepared.build.vmlinux} "
                "(a named guest gets them all loaded: `shell --name N --detach --gdb`, `gdb N`)")
        log(f"console log: {machine.console.log_path if machine.console else '?'}")
        print(f"\n  {ssh.command_line()}\n", flush=True)
        if args.command:
            result = ssh.run(args.command)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.status
        if shutil.which("ssh") and sys.stdin.isatty():
            return subprocess.call(shlex.split(ssh.command_line()) + ["-o", "LogLevel=ERROR"])
        log("no terminal (or no ssh client): the guest stays up until you press Ctrl-C")
        try:
            while machine.alive:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


def _shell_detached(args: argparse.Namespace) -> int:
    from .workflows import live

    if not (args.detach and args.name):
        raise HarnessError("--name and --detach go together: `iopt-hil shell --name NAME --detach`")
    live.check_free(cache_root(), args.name)
    _prepare(args)  # build here, with progress; the server then finds it cached
    argv = [sys.executable, "-m", "harness", "serve-guest", args.name,
            *build_args(args.tree, args.toolchain, _fragments(args)), *(["--gdb"] if args.gdb else [])]
    log(f"starting guest {args.name!r}")
    state = live.start_detached(cache_root(), args.name, argv, log)
    print(f"guest {state.name}: {state.release}, up (server pid {state.pid})")
    print(f"  run directory: {state.rundir}")
    print(f"  console log:   {state.console_log}")
    print(f"  ssh:           {shlex.join(state.ssh_argv())}")
    print(f"  or:            iopt-hil ssh {state.name} [COMMAND]   (walk, console, ps, stop likewise)")
    return 0


def cmd_serve_guest(args: argparse.Namespace) -> int:
    from .workflows import live

    return live.serve(cache_root(), args.name, prepare(_request(args), lambda m: print(m, flush=True)),
                      gdb=args.gdb)


def cmd_ssh(args: argparse.Namespace) -> int:
    from .guest.ssh import SshChannel
    from .workflows import live

    state = live.require_running(live.read_state(cache_root(), args.name))
    if args.remote:
        ssh = SshChannel(state.ssh_port, Path(state.key))
        try:
            result = ssh.run(shlex.join(args.remote), timeout=args.timeout)
        finally:
            ssh.close()
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.status
    if shutil.which("ssh") is None:
        raise HarnessError("no ssh client on this host: pass a command, `iopt-hil ssh NAME CMD`")
    return subprocess.call(state.ssh_argv())


def cmd_console(args: argparse.Namespace) -> int:
    from .workflows import live

    state = live.read_state(cache_root(), args.name)
    path = Path(state.console_log or live.live_dir(cache_root()) / args.name / "console.log")
    with open(path, errors="replace") as console:
        sys.stdout.write(console.read())
        if args.no_follow:
            return 0
        try:
            while live.status_of(read := live.read_state(cache_root(), args.name)) in ("running", "starting"):
                line = console.readline()
                if line:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)
            log(f"guest {args.name!r} is {live.status_of(read)}")
        except KeyboardInterrupt:
            pass
    return 0


def cmd_gdb(args: argparse.Namespace) -> int:
    from .build.buildroot import BuildRoot
    from .workflows import live

    state = live.require_running(live.read_state(cache_root(), args.name))
    if not state.gdb_port:
        raise HarnessError(f"guest {args.name!r} has no gdb stub: start it with "
                           f"`iopt-hil shell --name {args.name} --detach --gdb`")
    root = BuildRoot(cache_root()).ensure(log)
    root.ensure_packages(["gdb-multiarch"], log)
    argv, binds = live.gdb_argv(state, args.gdb_args)
    return subprocess.call(root.argv(argv, binds))


def cmd_ps(args: argparse.Namespace) -> int:
    from .workflows import live

    guests = live.list_guests(cache_root())
    if not guests:
        print("no named guests")
        return 0
    print(f"{'NAME':16} {'STATE':8} {'UPTIME':>8} {'SSH':>6} {'GDB':>6} {'RELEASE':14} TREE")
    for g in guests:
        status = live.status_of(g)
        up = f"{(time.time() - g.started) / 60:.0f} min" if status == "running" else "-"
        print(f"{g.name:16} {status:8} {up:>8} {g.ssh_port or '-':>6} {g.gdb_port or '-':>6} "
              f"{g.release or '-':14} "
              f"{g.tree or '-'} (build {g.build_key or '-'})")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from .workflows import live

    live.stop(cache_root(), args.name, log)
    log(f"guest {args.name!r} stopped and removed")
    return 0


def cmd_walk(args: argparse.Namespace) -> int:
    import json

    from .pgtable.dump import TableDump, Range, format_dump
    from .workflows import live

    answer = live.call(live.read_state(cache_root(), args.name), {"op": "walk", "id": args.id})
    tables = answer["tables"]
    if args.json:
        print(json.dumps(tables, indent=1))
        return 0
    if not tables:
        print("the module holds no tables")
    for t in tables:
        ranges = [Range(**r) for r in t.pop("ranges")]
        print(format_dump(TableDump(ranges=ranges, **t)))
    return 0


def cmd_mutate(args: argparse.Namespace) -> int:
    from .workflows import mutate
    from .build.buildroot import BuildRoot

    root = BuildRoot(cache_root()).ensure(log)
    clean, outcomes = mutate.run(args.tree, root, _suite_options(args), log, args.only)
    print(mutate.table(clean, outcomes))
    return 0 if mutate.self_check_passed(clean, outcomes) else 1


def _fragments(args: argparse.Namespace) -> tuple[str, ...]:
    """Fragment paths made absolute: verify and bisect-run pass them to a child elsewhere."""
    return tuple(str(Path(k).resolve()) if "/" in k or k.endswith(".config") else k
                 for k in args.kconfig)


def _results(args: argparse.Namespace, default: Path) -> Path:
    """Results default to this repository's results/; never inside the kernel tree under test
    (git bisect run starts us there, and files in it would change what is tested)."""
    results = Path(args.results).resolve() if args.results else default
    tree = (args.tree or (Path.cwd() if args.command_name == "bisect-run" else None))
    if tree is not None and results.is_relative_to(Path(tree).resolve()):
        raise HarnessError(f"results directory {results} is inside the kernel tree {tree}: "
                           "pass --results somewhere else")
    return results


def _suite_options(args: argparse.Namespace) -> SuiteOptions:
    return SuiteOptions(args.toolchain, _fragments(args), tuple(args.pytest_args))


def cmd_verify(args: argparse.Namespace) -> int:
    from .workflows.verify import VerifyRequest, markdown, verify

    if args.tree is None:
        raise HarnessError("verify needs --tree: the git kernel tree whose patch to check")
    results = _results(args, results_default() / "verify")
    report = verify(VerifyRequest(args.tree, args.base, args.patch, args.each, results,
                                  _suite_options(args)), log)
    print("\n" + markdown(report, excerpt_lines=12, detailed=3))
    log(f"report: {results / 'verify.md'}; "
        + ("REGRESSION (exit 1)" if report.regressed else "no regression (exit 0)"))
    return 1 if report.regressed else 0


def cmd_bisect_run(args: argparse.Namespace) -> int:
    from .workflows.bisect import ABORT, bisect_step

    try:
        step = bisect_step(args.tree or Path.cwd(), args.tests, _suite_options(args),
                           _results(args, results_default() / "bisect"), args.build_failure, log)
    except Exception as exc:  # anything unexpected must abort the bisection, not mark "bad"
        print(f"iopt-hil: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ABORT
    log(f"bisect-run: exit {step.status}: {step.reason}")
    return step.status


def cmd_edit_loop(args: argparse.Namespace) -> int:
    """The edit-loop benchmark of this checkout (benchmarks/edit_loop.py), run by the harness's
    own interpreter, so that a fresh clone needs no other command than this one."""
    root = checkout()
    script = root / "benchmarks" / "edit_loop.py" if root else None
    if script is None or not script.is_file():
        raise ConfigError("the edit-loop benchmark lives in a checkout of iopt-hil "
                          "(benchmarks/edit_loop.py); this installation has none")
    rest = args.benchmark_args[1:] if args.benchmark_args[:1] == ["--"] else args.benchmark_args
    return subprocess.run([sys.executable, str(script), *rest]).returncode


def cmd_clean(args: argparse.Namespace) -> int:
    cache = cache_root()
    for stale in sweep_stale():
        log(f"removed stale {stale}")
    targets = [cache / "builds", cache / "guest"] + ([
        cache / "root", cache / "root-sid", cache / "trees", cache / "debs", cache / "worktrees",
        cache / "selftest", cache / "mutation", cache / "tools"]
        if args.all else [])
    for target in targets:
        if target.exists():
            remove_tree(target)
            log(f"removed {target}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iopt-hil", description="QEMU hardware-in-the-loop tests "
                                "for the Linux Rust io_pgtable abstraction")
    sub = p.add_subparsers(dest="command_name", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        for option in BUILD_OPTIONS:
            option.register(sp.add_argument)

    for name, func, doc in (("run", cmd_run, "build if needed, boot, run the guest suite"),
                            ("selftest", cmd_selftest, "run the project's own tests"),
                            ("build", cmd_build, "build kernel and test module only"),
                            ("shell", cmd_shell, "boot a guest and SSH into it")):
        sp = sub.add_parser(name, help=doc)
        common(sp)
        if name in ("run", "selftest"):
            sp.set_defaults(pytest_args=[])  # everything not an iopt-hil option goes to pytest
        if name == "run":
            RESULTS.register(sp.add_argument)
            GRANULE.register(sp.add_argument)  # with pytest-xdist's -n N, N guests in parallel
        if name == "shell":
            sp.add_argument("-c", "--command", help="run this in the guest and exit")
            sp.add_argument("--name", help="name the guest (with --detach)")
            sp.add_argument("--detach", action="store_true",
                            help="leave the guest running; use ssh/console/walk/gdb/stop NAME")
            sp.add_argument("--gdb", action="store_true",
                            help="QEMU's gdb stub on 127.0.0.1, kernel with debug info (`gdb` fragment)")
        sp.set_defaults(func=func)
    sp = sub.add_parser("verify", help="build base and head (or base + patches) in a private "
                        "worktree, run the suite on both, report regressions (exit 1)")
    common(sp)
    sp.add_argument("--base", help="base revision (default: HEAD with --patch, else @{upstream})")
    sp.add_argument("--patch", type=Path, help="mbox/patch file or directory, applied with git am")
    sp.add_argument("--each", action="store_true", help="every commit must build, boot and pass")
    RESULTS.register(sp.add_argument)  # default: results/verify/
    sp.set_defaults(func=cmd_verify, pytest_args=[])
    sp = sub.add_parser("bisect-run", help="for `git bisect run`: 0 good, 1 bad, 125 skip")
    common(sp)
    sp.add_argument("tests", nargs="+", help="test ids, e.g. tests/guest/test_contract.py::test_x")
    sp.add_argument("--build-failure", choices=("auto", "skip", "bad"), default="auto",
                    help="auto: bad if compiler errors point into the io_pgtable code, else skip")
    RESULTS.register(sp.add_argument)  # default: results/bisect/
    sp.set_defaults(func=cmd_bisect_run, pytest_args=[])
    sp = sub.add_parser("mutate", help="mutation self-check: wrong one-line changes to a copy "
                        "of the tree (default: the default tree) must each fail the suite")
    common(sp)
    sp.add_argument("--only", action="append", help="run mutants whose name contains this")
    sp.set_defaults(func=cmd_mutate, pytest_args=[])
    sp = sub.add_parser("serve-guest", help=argparse.SUPPRESS)  # what `shell --detach` starts
    common(sp)
    sp.add_argument("name")
    sp.set_defaults(func=cmd_serve_guest)
    sp.add_argument("--gdb", action="store_true")
    sp = sub.add_parser("gdb", help="gdb-multiarch on a named --gdb guest: vmlinux, the kernel's "
                        "gdb helpers and our module's symbols loaded")
    sp.add_argument("name")
    sp.add_argument("gdb_args", nargs=argparse.REMAINDER, help="more gdb arguments, e.g. -batch -ex bt")
    sp.set_defaults(func=cmd_gdb)
    sp = sub.add_parser("ssh", help="run a command in a named guest (or log in)")
    sp.add_argument("name")
    sp.add_argument("remote", nargs=argparse.REMAINDER, help="command (default: a login shell)")
    sp.add_argument("--timeout", type=float, default=600.0, help="seconds the command may take")
    sp.set_defaults(func=cmd_ssh)
    sp = sub.add_parser("console", help="follow a named guest's serial console")
    sp.add_argument("name")
    sp.add_argument("--no-follow", action="store_true", help="print what it said so far and exit")
    sp.set_defaults(func=cmd_console)
    sp = sub.add_parser("ps", help="list named guests: name, state, uptime, SSH port, tree")
    sp.set_defaults(func=cmd_ps)
    sp = sub.add_parser("stop", help="shut a named guest down and remove what it made")
    sp.add_argument("name")
    sp.set_defaults(func=cmd_stop)
    sp = sub.add_parser("walk", help="decode, from the host, the page tables a named guest's "
                        "module holds")
    sp.add_argument("name")
    sp.add_argument("id", nargs="?", type=int, help="one table (default: every table)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_walk)
    sp = sub.add_parser("edit-loop", help="benchmark: where the time of the edit loop goes (a C "
                        "edit, a pgtable.rs edit, -k, no change; --cold: an empty cache)")
    sp.add_argument("benchmark_args", nargs=argparse.REMAINDER,
                    help="the benchmark's options: --edits N, --scenarios c,rust,narrow,nochange,bug, --cold")
    sp.set_defaults(func=cmd_edit_loop)
    sp = sub.add_parser("clean", help="remove builds and images (--all: build root, trees, "
                        "private worktrees too)")
    sp.add_argument("--all", action="store_true")
    sp.set_defaults(func=cmd_clean)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["edit-loop"]:  # every option, --help too, is the benchmark's own
        argv = ["edit-loop", "--", *argv[1:]]
    try:
        args, unknown = p.parse_known_args(argv)
    except SystemExit as exc:
        if argv[:1] == ["bisect-run"] and exc.code:
            from .workflows.bisect import ABORT
            return ABORT  # a usage error must abort `git bisect run`, not mark the commit bad
        raise
    if unknown:
        if args.command_name not in ("run", "selftest", "verify", "bisect-run"):
            p.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.pytest_args = unknown  # e.g. `iopt-hil run -q -k 2M`
    try:
        return int(args.func(args))
    except HarnessError as exc:
        print(f"iopt-hil: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permission denied, a missing file: one line, no traceback
        print(f"iopt-hil: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
