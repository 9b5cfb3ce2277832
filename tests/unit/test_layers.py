"""The package tree is the architecture: each layer imports only the layers below it, and only
the plugin knows pytest. Read from the source with `ast`, so a lazy import inside a function
counts too."""
from __future__ import annotations

import ast
from pathlib import Path

import harness

PACKAGE = Path(harness.__file__).parent
# Lowest first. `errors` and `resources` are the base every layer may use.
LAYERS = ["base", "build", "guest", "pgtable", "results", "workflows", "plugin", "cli"]
TOP_MODULES = {"errors": "base", "resources": "base", "timeline": "base", "__init__": "base", "cli": "cli",
               "__main__": "cli"}


def layer_of(module: str) -> str:
    """`harness.guest.machine` -> `guest`; `harness.errors` -> `base`."""
    parts = module.split(".")[1:]
    if not parts:
        return "base"
    return TOP_MODULES.get(parts[0], parts[0]) if len(parts) == 1 else parts[0]


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import statement in the file."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import x -> harness.pkg.x
                    found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
                    continue
                found.append((node.lineno, target))
            else:
                found.append((node.lineno, node.module or ""))
    return found


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_known_layer() -> None:
    for path in sources():
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        assert layer_of(module) in LAYERS, f"{module} is in no layer of {LAYERS}"


def test_no_layer_imports_a_higher_one() -> None:
    bad = []
    for path in sources():
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        mine = LAYERS.index(layer_of(module))
        for line, target in imports(path):
            if target.split(".")[0] != "harness":
                continue
            theirs = LAYERS.index(layer_of(target))
            if theirs > mine:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {layer_of(module)} "
                           f"imports {target} ({layer_of(target)})")
    assert not bad, "layer rule broken:\n" + "\n".join(bad)


def test_only_the_plugin_imports_pytest() -> None:
    bad = [f"{path.relative_to(PACKAGE.parent)}:{line}"
           for path in sources() if "plugin" not in path.relative_to(PACKAGE).parts
           for line, target in imports(path) if target.split(".")[0] in ("pytest", "_pytest")]
    assert not bad, f"pytest imported outside harness/plugin: {bad}"


def test_the_checker_sees_a_violation() -> None:
    """The rule above is only worth something if it can fail: a guest module importing the
    workflows layer must be flagged."""
    assert LAYERS.index(layer_of("harness.workflows.verify")) > LAYERS.index(
        layer_of("harness.guest.machine"))
    assert layer_of("harness.errors") == "base" and layer_of("harness.cli") == "cli"
