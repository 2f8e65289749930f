"""Generated documentation stays identical to what the code says."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config.reference import markdown
from broker.reasons import REASONS, markdown_table
from broker.reference_docs import expected

REPO = Path(__file__).resolve().parents[2]


def test_readme_embeds_the_current_reason_table() -> None:
    text = (REPO / "README.md").read_text()
    embedded = text.split("<!-- reasons:start -->\n", 1)[1].split("<!-- reasons:end -->", 1)[0]
    assert embedded == markdown_table(), "run ./dev docs"


@pytest.mark.parametrize("name", ["README.md", "docs/configuration.md", "docs/audit.md"])
def test_generated_docs_are_current(name: str) -> None:
    """``./dev docs`` would change nothing."""
    assert expected(REPO)[REPO / name] == (REPO / name).read_text(), "run ./dev docs"


def test_configuration_reference_is_current() -> None:
    assert (REPO / "docs" / "configuration.md").read_text() == markdown()


def test_every_reason_code_is_snake_case_and_documented() -> None:
    for code, row in REASONS.items():
        assert code.replace("_", "").isalnum()
        assert code == code.lower()
        assert row.description
        assert row.hint
        assert 400 <= row.http_status <= 599 or code == "logout_partial"  # an informative page


def test_audit_doc_embeds_the_current_schema() -> None:
    from broker.audit.schema import markdown as schema_markdown

    text = (REPO / "docs" / "audit.md").read_text()
    assert text.endswith(schema_markdown())
