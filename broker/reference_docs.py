"""The generated parts of the documentation: the reason-code table in README.md, docs/configuration.md
and the audit schema at the end of docs/audit.md. ``./dev docs`` rewrites them; the tests check them."""

from __future__ import annotations

import sys
from pathlib import Path

from broker.audit.schema import markdown as audit_schema
from broker.config.reference import markdown as configuration_reference
from broker.reasons import markdown_table

START, END = "<!-- reasons:start -->\n", "<!-- reasons:end -->"


def expected(root: Path) -> dict[Path, str]:
    """Each generated file's intended content, given the hand-written parts as they are now."""
    readme = (root / "README.md").read_text()
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    audit = (root / "docs" / "audit.md").read_text()
    schema = audit_schema()
    if audit.endswith(schema):
        audit_text = audit
    else:
        cut = audit.find(schema.splitlines()[0])
        audit_text = (audit[:cut] if cut >= 0 else audit.rstrip("\n") + "\n\n") + schema
    return {
        root / "README.md": head + START + markdown_table() + END + tail,
        root / "docs" / "configuration.md": configuration_reference(),
        root / "docs" / "audit.md": audit_text,
    }


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    for path, text in expected(root).items():
        if path.read_text() != text:
            path.write_text(text)
            print(f"rewrote {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
