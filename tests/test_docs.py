"""The troubleshooting table in docs/operations.md quotes nodeagent's own
messages: every `code` span in its "what you see" column must be text the
source can produce, so the table cannot drift from the code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OPERATIONS = REPO / "docs" / "operations.md"
HOLE = "\x00"  # a part of a message only known at run time
PLACEHOLDER = re.compile(r"<[^<>]*>|\.\.\.|…")  # how the docs mark variable parts


def _module_constants() -> dict[str, dict[str, str]]:
    """Module-level NAME = "text" of every nodeagent module, by module name."""
    consts: dict[str, dict[str, str]] = {}
    for path in (REPO / "nodeagent").rglob("*.py"):
        if "pb" in path.relative_to(REPO / "nodeagent").parts:
            continue
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        found = consts.setdefault(module, {})
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                found[node.targets[0].id] = node.value.value
    return consts


def source_messages() -> list[str]:
    """Every string literal and f-string in nodeagent/ (generated stubs aside),
    with adjacent literals joined as Python joins them; a formatted value
    becomes HOLE unless it names a module-level string constant (KIND,
    API_VERSION, ...), which is filled in as the f-string would."""
    consts = _module_constants()
    texts: list[str] = []
    for path in (REPO / "nodeagent").rglob("*.py"):
        if "pb" in path.relative_to(REPO / "nodeagent").parts:
            continue
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        tree = ast.parse(path.read_text())
        names = dict(consts.get(module, {}))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module in consts:
                for alias in node.names:
                    if alias.name in consts[node.module]:
                        names[alias.asname or alias.name] = consts[node.module][alias.name]
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                parts = []
                for value in node.values:
                    if isinstance(value, ast.Constant):
                        parts.append(str(value.value))
                    elif (isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Name)
                          and value.value.id in names and value.format_spec is None
                          and value.conversion in (-1, ord("s"), ord("r"))):
                        text = names[value.value.id]
                        parts.append(repr(text) if value.conversion == ord("r") else text)
                    else:
                        parts.append(HOLE)
                texts.append("".join(parts))
    return texts


def occurs(quote: str, messages: list[str]) -> bool:
    """The quote's fixed parts appear, in order, in one message."""
    fixed = [f for f in PLACEHOLDER.split(quote) if f]
    for message in messages:
        at = 0
        for fragment in fixed:
            at = message.find(fragment, at)
            if at < 0:
                break
            at += len(fragment)
        else:
            return True
    return False


def troubleshooting_rows() -> list[list[str]]:
    text = OPERATIONS.read_text()
    section = text.split("\n## Troubleshooting\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows.append(cells)
    assert rows[0] == ["symptom", "what you see", "cause", "fix"], rows[0]
    return rows[1:]


def test_every_quoted_error_text_is_in_the_source() -> None:
    rows = troubleshooting_rows()
    assert len(rows) >= 15
    messages = source_messages()
    missing = []
    for cells in rows:
        assert len(cells) == 4, cells
        quotes = re.findall(r"`([^`]+)`", cells[1])
        assert quotes, f"row without a quoted message: {cells[0]}"
        for quote in quotes:
            fixed = "".join(PLACEHOLDER.split(quote))
            assert len(fixed.strip()) >= 8, f"too little fixed text to check: {quote!r}"
            if not occurs(quote, messages):
                missing.append(quote)
    assert not missing, "quoted in docs/operations.md but not in nodeagent/:\n" + "\n".join(missing)


def test_the_check_can_fail() -> None:
    """A changed word, or fixed parts out of order, is caught."""
    messages = source_messages()
    assert occurs("container runtime is down", messages)
    assert not occurs("container runtime is gone", messages)
    assert occurs("Back-off pulling image <image>", messages)
    assert not occurs("pulling <x> Back-off", ['Back-off pulling image "\x00"'])
    assert occurs("not a KubeletConfiguration (kubelet.config.k8s.io/v1beta1) field", messages)
