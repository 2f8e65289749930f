"""YAML with line numbers: what regional IT sees when a file is not even well-formed YAML.

Every problem is a ConfigIssue naming the file, the line (1-based) and, where
there is one, the key path. Duplicate keys, which PyYAML would silently
collapse to the last one, are errors.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from broker.config import yamlsource
from broker.config.yamlsource import YamlSource, format_path, load_yaml
from broker.errors import ConfigIssue
from tests.unit.config.editing import (
    BROKER,
    KOMMUN_A,
    Expected,
    assert_issues,
    load_issues,
    replacing,
    write_text,
)

FILE = "municipalities/kommun-x.yaml"


def load(tmp_path: Path, text: str) -> tuple[YamlSource | None, list[ConfigIssue]]:
    """Write ``text`` as ``FILE`` under ``tmp_path`` and load it."""
    return load_yaml(write_text(tmp_path / FILE, text), FILE)


# --- syntax errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        pytest.param("name: x\npolicies: [1.2.3, 1.2.4\nstatus: active\n", 3, "expected ',' or ']'",
                     id="unclosed-flow-list"),
        pytest.param("name: x\nsupport: {sv: a\nstatus: active\n", 3, "expected ',' or '}'",
                     id="unclosed-flow-mapping"),
        pytest.param("name:\n  sv: A\n en: B\n", 3, "expected <block end>", id="indentation-goes-back-half-way"),
        pytest.param("name:\n\tsv: A\n", 2, "character '\\t'", id="tab-indentation"),
        pytest.param("status: active\nlogin: certificate: x\n", 2, "mapping values are not allowed",
                     id="second-colon-on-a-line"),
        pytest.param("name: x\nsupport: *help\n", 2, "undefined alias 'help'", id="undefined-alias"),
        pytest.param("status: active\n---\nlogin: certificate\n", 2, "another document", id="two-documents"),
        pytest.param("certificate:\n  trust_anchors:\n    - a.pem\n  policies: x\n    - oid: 1.2.3\n", 5,
                     "YAML syntax error", id="list-item-under-a-scalar"),
        # The scanner only notices at the end of the file; the useful line is where the quote opened.
        pytest.param('status: "active\nlogin: certificate\n', 1, "YAML syntax error", id="unclosed-quote"),
    ],
)
def test_a_syntax_error_is_reported_with_its_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    source, issues = load(tmp_path, text)

    assert source is None
    assert_issues(issues, [Expected(FILE, line, "", fragment)], tmp_path)
    assert issues[0].message.startswith("YAML syntax error: ")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param("status: active\n---\nlogin: certificate\n", 2,
                     "YAML syntax error: expected a single document in the stream at line 1, but found another "
                     "document", id="two-documents"),
        pytest.param("name:\n  sv: &n Kommun A\n  en: &n Municipality A\n", 3,
                     "YAML syntax error: found duplicate anchor 'n'; first occurrence at line 2, second occurrence",
                     id="duplicate-anchor"),
    ],
)
def test_a_syntax_error_says_what_the_yaml_expected(tmp_path: Path, text: str, line: int, message: str) -> None:
    """PyYAML's composer words its problem as the end of a sentence its context begins ("but found another
    document", "second occurrence"): the message has both, and the line of the first half."""
    source, issues = load(tmp_path, text)

    assert source is None
    assert [(i.file, i.line, i.key, i.message) for i in issues] == [(FILE, line, "", message)]


@pytest.mark.parametrize(("text", "line", "hint"), [
    pytest.param("name:\n\u00a0 sv: Kommun A\n  en: Municipality A\n", 2,
                 "(line 2 holds a non-breaking space, U+00A0, often pasted from a web page or a word processor: "
                 "write a plain space)", id="non-breaking-space-in-the-indentation"),
    pytest.param("status: active\nlogin:\u00a0certificate\nname:\n  sv: A\n", 2,
                 "(line 2 holds a non-breaking space, U+00A0, often pasted from a web page or a word processor: "
                 "write a plain space)", id="non-breaking-space-after-a-colon"),
    pytest.param("name:\n\tsv: A\n", 2, "(YAML takes no tab for indentation or after a colon: use spaces)",
                 id="tab-indentation"),
    pytest.param("status:\tactive\nlogin: certificate\n", 1,
                 "(YAML takes no tab for indentation or after a colon: use spaces)", id="tab-after-a-colon"),
])
def test_a_syntax_error_from_an_invisible_character_says_which(tmp_path: Path, text: str, line: int,
                                                               hint: str) -> None:
    """A non-breaking space or a tab looks like a space in an editor; the error PyYAML gives ("mapping values are
    not allowed here", "found character '\\t' that cannot start any token") does not say it is the cause."""
    source, issues = load(tmp_path, text)

    assert source is None
    assert [(i.file, i.line, i.key) for i in issues] == [(FILE, line, "")]
    assert issues[0].message.startswith("YAML syntax error: ")
    assert issues[0].message.endswith(hint)


@pytest.mark.parametrize(("text", "line", "runs_to"), [
    pytest.param('name: x\norganization_number: "2120001009\nstatus: active\nlogin: certificate\nsupport: "x"\n',
                 2, 5, id="double-quote-not-closed"),
    pytest.param("name: x\nsupport:\n  sv: 'Kommunens IT\n  en: IT\nstatus: active\nlogin: 'certificate'\n",
                 3, 6, id="single-quote-not-closed"),
])
def test_a_quote_left_open_is_reported_where_it_opens(tmp_path: Path, text: str, line: int, runs_to: int) -> None:
    """The quoted value swallows the keys below it up to the next quote, and PyYAML notices only there: the
    problem is reported at the line where the quote opened, saying where the value ran to."""
    source, issues = load(tmp_path, text)

    assert source is None
    assert [(i.file, i.line, i.key) for i in issues] == [(FILE, line, "")]
    assert issues[0].message.startswith("YAML syntax error: ")
    assert issues[0].message.endswith(f"(the quoted value that starts at line {line} runs on to line {runs_to}, over "
                                      "the keys below it: is its closing quote missing?)")


@pytest.mark.parametrize(("text", "line", "character"), [
    pytest.param("name:\n  sv: Kommun A\x1b[0m\n", 2, "U+001B", id="terminal-escape-pasted"),
    pytest.param("status: active\nlogin: certificate\x00\n", 2, "U+0000", id="nul"),
    pytest.param("status: active\r\nlogin: certificate\r\nsupport:\r\n  sv: \x07\r\n", 4, "U+0007", id="crlf-lines"),
])
def test_a_control_character_is_reported_at_its_line(tmp_path: Path, text: str, line: int, character: str) -> None:
    """PyYAML's reader refuses it before parsing, with an offset into "<unicode string>" and no line: the message
    names the file's line and the character, as every other problem of a file does."""
    source, issues = load(tmp_path, text)

    assert source is None
    assert [(i.file, i.line, i.key, i.message) for i in issues] == [
        (FILE, line, "", f"character {character} is not allowed in YAML (a control character, often pasted from a "
                         "terminal or a word processor: remove it)")]


def test_a_syntax_error_in_a_configured_file_names_that_file(config_dir: Path) -> None:
    replacing(KOMMUN_A, "status: active", "status: [active")(config_dir)

    assert_issues(load_issues(config_dir),
                  [Expected(KOMMUN_A, "login: certificate", "", "YAML syntax error")], config_dir)


# --- keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("status: active\nlogin: certificate\nstatus: suspended\n",
                     [(3, "status")], id="top-level"),
        pytest.param("certificate:\n  identity:\n    type: hsa_id\n    source: san_upn\n    type: opaque\n",
                     [(5, "certificate.identity.type")], id="nested"),
        pytest.param("policies:\n  - oid: 1.2.3\n    loa: loa3\n    oid: 1.2.4\n",
                     [(4, "policies[0].oid")], id="inside-a-list-item"),
        pytest.param("login: a\nlogin: b\nstatus: x\nlogin: c\n",
                     [(2, "login"), (4, "login")], id="every-repetition"),
        pytest.param("name: {sv: A, en: B, sv: C}\n", [(1, "name.sv")], id="flow-mapping"),
    ],
)
def test_a_duplicate_key_is_an_error_at_its_second_occurrence(
    tmp_path: Path, text: str, expected: list[tuple[int, str]]
) -> None:
    source, issues = load(tmp_path, text)

    assert source is not None  # the rest of the file is still checked
    assert_issues(issues, [Expected(FILE, line, key, "duplicate key")
                           for line, key in expected], tmp_path)


def test_a_duplicate_key_in_a_municipality_file_is_reported_there_and_nowhere_else(config_dir: Path) -> None:
    # demo-sp names kommun-a; the loader does not add "no municipality 'kommun-a'" on top.
    replacing(KOMMUN_A, "status: active", "status: active\nstatus: suspended")(config_dir)

    assert_issues(load_issues(config_dir),
                  [Expected(KOMMUN_A, "status: suspended", "status", "duplicate key")], config_dir)


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        pytest.param("status: active\n2: x\n", 2, "", "key 2 must be a string", id="integer-at-top-level"),
        pytest.param("name:\n  sv: A\n  true: B\n", 3, "name", "key True must be a string",
                     id="yaml-boolean-nested"),
        pytest.param("name:\n  sv: A\n  ~: B\n", 3, "name", "key None must be a string", id="null"),
        pytest.param("certificate:\n  policies:\n    - 1.5: x\n", 3, "certificate.policies[0]",
                     "key 1.5 must be a string", id="float-inside-a-list-item"),
        pytest.param("? [sv, en]\n: x\n", 1, "", "a key must be a string, not a list (a YAML complex key)",
                     id="complex-key"),
        pytest.param("? {sv: a}\n: x\n", 1, "", "a key must be a string, not a mapping", id="mapping-as-key"),
    ],
)
def test_a_key_that_is_not_a_string_is_an_error(
    tmp_path: Path, text: str, line: int, key: str, fragment: str
) -> None:
    source, issues = load(tmp_path, text)

    assert source is not None  # the rest of the file is still checked
    assert_issues(issues, [Expected(FILE, line, key, fragment)], tmp_path)


def test_a_non_string_key_in_broker_yaml_stops_that_file(config_dir: Path) -> None:
    replacing(BROKER, "session:\n", "session:\n  1800: idle\n")(config_dir)

    assert_issues(load_issues(config_dir), [Expected(BROKER, "1800: idle", "session", "must be a string")],
                  config_dir)


# --- empty, missing and unreadable files ------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("# nothing here yet\n\n", id="only-comments"),
    ],
)
def test_an_empty_file_is_an_empty_mapping(tmp_path: Path, text: str) -> None:
    source, issues = load(tmp_path, text)

    assert issues == []
    assert source is not None
    assert source.data == {}
    assert source.line(("anything",)) == 1


def test_an_empty_municipality_file_lists_every_missing_required_key(config_dir: Path) -> None:
    (config_dir / KOMMUN_A).write_text("# to be filled in\n", encoding="utf-8")

    assert_issues(load_issues(config_dir), [
        Expected(KOMMUN_A, 1, "", f"missing required key {name!r}")
        for name in ("name", "organization_number", "status", "login")
    ], config_dir)


def test_an_empty_broker_yaml_lists_its_missing_required_keys(config_dir: Path) -> None:
    (config_dir / BROKER).write_text("", encoding="utf-8")

    assert_issues(load_issues(config_dir), [
        Expected(BROKER, 1, "", "missing required key 'idp'"),
        Expected(BROKER, 1, "", "missing required key 'audit'"),
    ], config_dir)


def test_a_missing_file_is_reported_without_a_line(tmp_path: Path) -> None:
    source, issues = load_yaml(tmp_path / "broker.yaml", "broker.yaml")

    assert source is None
    assert_issues(issues, [Expected("broker.yaml", None, "", "file not found")], tmp_path)


def test_a_file_that_is_not_utf8_is_reported_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "municipalities").mkdir()
    (tmp_path / FILE).write_bytes("name:\n  sv: V\xe4xj\xf6\n".encode("latin-1"))

    source, issues = load_yaml(tmp_path / FILE, FILE)

    assert source is None
    assert_issues(issues, [Expected(FILE, 2, "", "not UTF-8: byte 0xe4 (save the file as UTF-8")], tmp_path)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_file_is_named_as_such(tmp_path: Path, encoding: str) -> None:
    """Windows' "Unicode" (what PowerShell 5 writes by default): not text in another 8-bit character set, as the
    hint for a byte that is not UTF-8 would say, and no line of it is readable."""
    (tmp_path / "municipalities").mkdir()
    (tmp_path / FILE).write_bytes("name:\n  sv: V\xe4xj\xf6\n".encode(encoding))

    source, issues = load_yaml(tmp_path / FILE, FILE)

    assert source is None
    assert [(i.file, i.line, i.key, i.message) for i in issues] == [
        (FILE, None, "", "not UTF-8: the file is UTF-16 text (Windows' \"Unicode\", as PowerShell 5 writes it); "
                         "save it as UTF-8")]


# --- explicit tags -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("status: active\nmax_chain_depth: !!int four\n", "YAML", id="int-tag-on-a-word"),
        pytest.param("status: active\nmax_chain_depth: !!float four\n", "YAML", id="float-tag-on-a-word"),
        pytest.param("status: active\nmax_chain_depth: !!timestamp soon\n", "YAML", id="timestamp-tag-on-a-word"),
        pytest.param("status: active\nmax_chain_depth: !!binary zz\n", "base64", id="binary-tag-bad-base64"),
        pytest.param("status: active\nmax_chain_depth: !!bool maybe\n", "YAML value 'maybe' does not fit its tag",
                     id="bool-tag-on-a-word"),
        # an explicit tag is no way around decimal numbers (PyYAML's constructors read YAML 1.1's other forms)
        pytest.param("status: active\nmax_chain_depth: !!int 010\n",
                     "(a leading zero: write 10; YAML 1.1 reads a number with one as octal)", id="int-tag-octal"),
        pytest.param("status: active\nmax_chain_depth: !!int 0x1F\n", "0x1F is the hexadecimal form",
                     id="int-tag-hexadecimal"),
        pytest.param("status: active\nmax_chain_depth: !!int 1:30\n", "YAML 1.1 reads 1:30 as a number in base 60",
                     id="int-tag-base-60"),
        pytest.param("status: active\nmax_chain_depth: !!float 1:30.5\n",
                     "YAML 1.1 reads 1:30.5 as a number in base 60", id="float-tag-base-60"),
        pytest.param("status: active\nmax_chain_depth: !include depth.yaml\n", "tag '!include'",
                     id="unknown-local-tag"),
        pytest.param("status: active\nmax_chain_depth: !!python/object:os.system x\n", "python/object",
                     id="python-object-tag"),
        # on a list or a mapping the tag is refused as such, not reported as a list where a number belongs
        pytest.param("status: active\nmax_chain_depth: !!python/object/apply:os.system [ls]\n",
                     "YAML tag tag:yaml.org,2002:python/object/apply:os.system is not allowed", id="tag-on-a-list"),
        pytest.param("status: active\nmax_chain_depth: !include {file: depth.yaml}\n",
                     "YAML tag !include is not allowed", id="tag-on-a-mapping"),
    ],
)
def test_a_value_its_tag_cannot_construct_is_an_issue_with_its_line_and_key(
    tmp_path: Path, text: str, fragment: str
) -> None:
    source, issues = load(tmp_path, text)

    assert source is not None  # the rest of the file is still checked
    assert_issues(issues, [Expected(FILE, 2, "max_chain_depth", fragment)], tmp_path)


# --- where every key is ------------------------------------------------------------


def test_every_key_path_and_list_item_has_its_line(tmp_path: Path) -> None:
    source, issues = load(tmp_path, """\
        # comment
        name:
          sv: Kommun X
          en: Municipality X
        certificate:
          trust_anchors:
            - certs/root.pem
            - certs/other-root.pem
          policies:
            - oid: 1.2.3
              loa: loa3
        """)

    assert issues == []
    assert source is not None
    assert source.lines == {
        (): 2,
        ("name",): 2, ("name", "sv"): 3, ("name", "en"): 4,
        ("certificate",): 5,
        ("certificate", "trust_anchors"): 6,
        ("certificate", "trust_anchors", 0): 7,
        ("certificate", "trust_anchors", 1): 8,
        ("certificate", "policies"): 9,
        ("certificate", "policies", 0): 10,
        ("certificate", "policies", 0, "oid"): 10,
        ("certificate", "policies", 0, "loa"): 11,
    }


def test_an_issue_at_a_key_that_is_absent_points_at_its_nearest_ancestor(tmp_path: Path) -> None:
    source, _ = load(tmp_path, "name: x\ncertificate:\n  revocation:\n    mode: check\n")
    assert source is not None

    issue = source.issue(("certificate", "revocation", "crl", "files"), "needs a CRL")

    assert (issue.file, issue.line, issue.key) == (FILE, 3, "certificate.revocation.crl.files")


@pytest.mark.parametrize(
    ("path", "text"),
    [
        pytest.param((), "", id="root"),
        pytest.param(("status",), "status", id="one-key"),
        pytest.param(("certificate", "policies", 0, "loa"), "certificate.policies[0].loa", id="list-index"),
        pytest.param(("municipalities", 1), "municipalities[1]", id="index-last"),
        pytest.param((0, "oid"), "[0].oid", id="index-first"),
    ],
)
def test_key_paths_are_written_as_in_the_documentation(path: tuple[str | int, ...], text: str) -> None:
    assert format_path(path) == text


def test_a_file_larger_than_a_mebibyte_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    text = "status: active\n" + "# padding\n" * (yamlsource.MAX_FILE_BYTES // 10)
    source, issues = load(tmp_path, text)

    assert source is None
    assert [str(i) for i in issues] == [f"{FILE}: cannot read file: larger than 1 MiB (a configuration file is a "
                                        "regular file of at most 1 MiB)"]


def test_a_file_of_exactly_a_mebibyte_is_read(tmp_path: Path) -> None:
    text = "status: active\n"
    source, issues = load(tmp_path, text + "#" * (yamlsource.MAX_FILE_BYTES - len(text) - 1) + "\n")

    assert issues == []
    assert source is not None
    assert source.data == {"status": "active"}


# --- merge keys -------------------------------------------------------------------


def test_merge_keys_are_resolved(tmp_path: Path) -> None:
    source, issues = load(tmp_path, """\
        name: &name
          sv: Kommun X
          en: Municipality X
        support:
          <<: *name
        """)

    assert issues == []
    assert source is not None
    assert source.data["support"] == {"sv": "Kommun X", "en": "Municipality X"}


def test_a_key_next_to_a_merge_key_overrides_the_merged_value(tmp_path: Path) -> None:
    # YAML merge keys (yaml.org/type/merge.html): keys of the current mapping override merged ones.
    # That is the point of a merge, not a duplicate key.
    source, issues = load(tmp_path, """\
        name: &name
          sv: Kommun X
          en: Municipality X
        support:
          <<: *name
          en: The service desk of Municipality X
        """)

    assert issues == []
    assert source is not None
    assert source.data["support"] == {"sv": "Kommun X", "en": "The service desk of Municipality X"}


def test_a_merge_key_in_an_anchored_mapping_reused_through_an_alias_is_no_duplicate(tmp_path: Path) -> None:
    source, issues = load(tmp_path, """\
        name: &n
          <<: {sv: Kommun X, en: Municipality X}
          sv: Kommun A
        support: *n
        """)

    assert issues == []
    assert source is not None
    assert source.data["name"] == source.data["support"] == {"sv": "Kommun A", "en": "Municipality X"}


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        pytest.param("a: &a\n  x: 1\n  <<: *a\n", 1, "a", "the mapping merges itself", id="merging-itself"),
        pytest.param("a: &a\n  x: 1\n  <<: [*a]\n", 1, "a", "the mapping merges itself", id="in-a-list"),
        pytest.param("a:\n  <<: [x]\n", 2, "a", "expected a mapping for merging, but found scalar",
                     id="a-scalar-in-the-list"),
        pytest.param("a:\n  <<: 1\n", 2, "a", "expected a mapping or list of mappings for merging, but found "
                     "scalar", id="a-scalar"),
    ],
)
def test_a_merge_of_something_other_than_mappings_is_an_error(tmp_path: Path, text: str, line: int, key: str,
                                                              fragment: str) -> None:
    source, issues = load(tmp_path, text)

    assert source is not None
    assert_issues(issues, [Expected(FILE, line, key, f"YAML merge error: {fragment}")], tmp_path)


# --- aliases: expansion cap and cycles ----------------------------------------------


def billion_laughs(levels: int, key: str = "lol") -> str:
    """The classic alias bomb: ``levels`` lines, each a list of ten aliases of the line before (10^levels values)."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return f"status: active\n{key}:\n" + "".join(f"  {line}\n" for line in lines)


def test_a_yaml_alias_bomb_stops_fast_at_the_node_cap(tmp_path: Path) -> None:
    """10^9 values from ten lines: building stops past MAX_NODES (at a4, 111,111 values with a0-a3) in about a
    second on a slow machine instead of filling memory for hours, and says which key."""
    started = time.monotonic()
    source, issues = load(tmp_path, billion_laughs(9))
    elapsed = time.monotonic() - started

    assert source is None
    assert [(i.file, i.line, i.key, i.message) for i in issues] == [
        (FILE, 7, "lol.a4", "too many nodes (YAML aliases expand to more than 100000)")]
    assert str(issues[0]) == (f"{FILE}:7: lol.a4: too many nodes (YAML aliases expand to more than 100000)")
    assert elapsed < 5, f"{elapsed:.2f} s"  # (10^9 values would take hours: the bound is generous)


def test_an_alias_bomb_with_its_anchors_inside_the_first_use_is_stopped_too(tmp_path: Path) -> None:
    """The anchors are defined inside the first alias of the level above, so the expansion starts at once."""
    inner = "[lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"
    for i in range(8):
        inner = f"[&l{i} {inner}" + f", *l{i}" * 9 + "]"
    started = time.monotonic()
    source, issues = load(tmp_path, f"status: active\nlol: {inner}\n")

    assert source is None
    assert [(i.line, i.key, i.message) for i in issues] == [
        (2, "lol", "too many nodes (YAML aliases expand to more than 100000)")]
    assert time.monotonic() - started < 5


def test_an_alias_bomb_in_mapping_keys_is_refused_unbuilt(tmp_path: Path) -> None:
    """Complex keys (``? [...]``) made of aliases of aliases: each key is refused as a list, by its line, without
    being built or shown (building and printing it was 10^9 values, uncounted)."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 4)]
    keys = "".join(f"? &k{i} [" + ", ".join([f"*k{i - 1}" if i else "*a3"] * 10) + "]\n: 1\n" for i in range(6))
    started = time.monotonic()
    source, issues = load(tmp_path, "lol:\n" + "".join(f"  {line}\n" for line in lines) + keys)

    assert time.monotonic() - started < 5
    assert source is not None
    assert [(i.line, i.key, i.message) for i in issues] == [
        (6 + 2 * n, "", "a key must be a string, not a list (a YAML complex key)") for n in range(6)]


def test_merges_of_merges_count_toward_the_node_cap(tmp_path: Path) -> None:
    """Each level merges the one before twice: 2^40 merged pairs from 40 lines (each a duplicate of the other
    copy's), stopped at the cap."""
    lines = ["m0: &m0 {a: 1, b: 2}"] + [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}" for i in range(1, 40)]
    started = time.monotonic()
    source, issues = load(tmp_path, "lol:\n" + "".join(f"  {line}\n" for line in lines))

    assert time.monotonic() - started < 5
    assert source is None
    assert (issues[-1].key, issues[-1].message) == ("lol.m12", "too many nodes (more than 100000)")


def test_the_node_cap_counts_alias_expansions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """root, a, its list and 3 items, b, its list and twice (list + 3 items): 16 nodes. The cap is inclusive."""
    text = "a: &a [1, 2, 3]\nb: [*a, *a]\n"
    monkeypatch.setattr(yamlsource, "MAX_NODES", 16)
    source, issues = load(tmp_path, text)
    assert issues == []
    assert source is not None
    assert source.data == {"a": [1, 2, 3], "b": [[1, 2, 3], [1, 2, 3]]}

    monkeypatch.setattr(yamlsource, "MAX_NODES", 15)
    source, issues = load(tmp_path, text)
    assert source is None
    assert [str(i) for i in issues] == [f"{FILE}:2: b: too many nodes (YAML aliases expand to more than 15)"]


def test_a_file_with_a_few_aliases_still_loads(tmp_path: Path) -> None:
    """Anchors and aliases used as intended: names reused, a CRL list shared, timeouts merged."""
    source, issues = load(tmp_path, """\
        name: &name
          sv: Kommun X
          en: Municipality X
        support: *name
        certificate:
          revocation:
            ocsp: &timeouts
              connect_timeout: 2s
              timeout: 3s
            crl:
              <<: *timeouts
              files: &crls [certs/x/issuing.crl, certs/x/root.crl]
          readiness_crls: *crls
        """)

    assert issues == []
    assert source is not None
    assert source.data["support"] == {"sv": "Kommun X", "en": "Municipality X"}
    assert source.data["certificate"]["revocation"]["crl"] == {
        "connect_timeout": "2s", "timeout": "3s", "files": ["certs/x/issuing.crl", "certs/x/root.crl"]}
    assert source.data["certificate"]["readiness_crls"] == ["certs/x/issuing.crl", "certs/x/root.crl"]
    assert source.line(("support",)) == 4


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        pytest.param("status: active\nlol: &a [1, *a]\n", 2, "lol", id="list-holding-itself"),
        pytest.param("status: active\nlol: &a\n  x: 1\n  me: *a\n", 4, "lol.me", id="mapping-holding-itself"),
    ],
)
def test_a_value_containing_itself_is_an_error(tmp_path: Path, text: str, line: int, key: str) -> None:
    source, issues = load(tmp_path, text)

    assert source is not None  # the alias left out; the rest of the file is still checked
    assert [(i.line, i.key, i.message) for i in issues] == [
        (line, key, "recursive YAML alias (the value contains itself)")]


def test_nesting_too_deep_for_the_parser_is_an_issue(tmp_path: Path) -> None:
    source, issues = load(tmp_path, "lol: " + "[" * 5000 + "]" * 5000 + "\n")

    assert source is None
    assert [(i.file, i.line, i.key, i.message) for i in issues] == [(FILE, None, "", "YAML nested too deeply")]


def test_an_alias_bomb_in_a_municipality_file_is_that_files_only_issue(config_dir: Path) -> None:
    """Under a key that is unknown anyway: the cap is hit before the schema is consulted."""
    path = config_dir / KOMMUN_A
    path.write_text(path.read_text(encoding="utf-8") + "\n" + billion_laughs(9, "x_bomb").split("\n", 1)[1],
                    encoding="utf-8")

    assert_issues(load_issues(config_dir), [
        Expected(KOMMUN_A, "a4:", "x_bomb.a4", "too many nodes (YAML aliases expand to more than 100000)")],
        config_dir)


def test_a_copied_municipality_with_a_syntax_error_does_not_hide_the_others(config_dir: Path) -> None:
    shutil.copy(config_dir / KOMMUN_A, config_dir / "municipalities/kommun-d.yaml")
    replacing("municipalities/kommun-d.yaml", "status: active", "status: [active")(config_dir)
    replacing(BROKER, "cookie_name: __Host-broker_session",
              "cookie_name: __Host-broker_session\n  cookie_name: x")(config_dir)

    assert_issues(load_issues(config_dir), [
        Expected(BROKER, "cookie_name: x", "session.cookie_name", "duplicate key"),
        Expected("municipalities/kommun-d.yaml", "login: certificate", "", "YAML syntax error"),
    ], config_dir)
