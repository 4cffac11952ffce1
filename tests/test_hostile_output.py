"""Nothing from a sample reaches the terminal or a Markdown report raw (issue #10, items 2, 3).

The hostile inputs are made here: fixture binaries copied under names with rich markup and
terminal escapes, a PE section and an ELF symbol renamed in place, labels holding the same,
a Markdown-injecting family label, an e-mail with escapes in its headers. Every command runs
through click's CliRunner, which is not a terminal: rich writes no colour codes there, so any
ESC byte in the output came from a sample.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kinship.api import Kinship
from kinship.cli import main
from kinship.exceptions import EXIT_CODES
from kinship.pipeline import Labels

# Markup that crashes rich ("[/]" closes nothing), markup that restyles, OSC 0 (window
# title), CSI 2J (clear screen), OSC 8 (hyperlink), RLO, a one-byte C1 CSI.
HOSTILE = ("[/][red]x[/red][link=https://evil.example]y[/link]\x1b]0;pwned\x07\x1b[2J"
           "\x1b]8;;https://evil.example\x1b\\\u202e\x9b")
FILE_PART = "[red]x[bold]\x1b]0;pwned\x07\x1b[2J\u202e\x9b"  # no "/" in a file name
# Raw sequences that must never appear in any output.
RAW = ("\x1b", "\x07", "\x9b", "\u202e")
SECTION = b"[/]\x1b[2J\x9b"  # 8 bytes: a PE section name
SYMBOL = b"[/]\x1b]0;p\x07"  # 9 bytes, as long as "open_port": an ELF symbol name
MD_HOSTILE = ("`|<script>alert(1)</script>[x](javascript:alert(1))|*em*\x1b]0;pwned\x07")


@pytest.fixture(scope="module")
def hostile(bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Path]:
    """Hostile files and a store (in a folder whose path holds "[/]" and ESC) of them."""
    root = tmp_path_factory.mktemp("hostile")
    folder = root / "evil[" / f"]{FILE_PART}"  # "...evil[/]..." in every path below
    folder.mkdir(parents=True)
    pe = folder / f"pe{FILE_PART}.exe"
    data = bytearray(bins["netsh_x86.exe"].read_bytes())
    at = data.find(b".data\0\0\0")
    assert at > 0
    data[at:at + 8] = SECTION
    pe.write_bytes(data)
    elf = folder / f"elf{FILE_PART}"
    data = bytearray(bins["netsh_elf64"].read_bytes())
    at = data.find(b"\0open_port\0")
    assert at > 0
    data[at + 1:at + 10] = SYMBOL
    elf.write_bytes(data)
    other = folder / f"other{FILE_PART}.exe"
    shutil.copyfile(bins["netsh_x64.exe"], other)
    db = folder / f"k{FILE_PART}.db"
    with Kinship(db) as k:
        report = k.add([pe, elf], Labels(family=HOSTILE, actor=HOSTILE, source=HOSTILE,
                                         version=HOSTILE, first_seen="2016-03"))
        assert len(report.added) == 2, report.failed
    return {"pe": pe, "elf": elf, "other": other, "db": db, "folder": folder}


def run(*args: str | Path, columns: int = 200, code: int = 0) -> str:
    """The command's stdout + stderr, after checking its exit code and that nothing raw or
    crashed came out."""
    r: Result = CliRunner(env={"COLUMNS": str(columns)}).invoke(main, [str(a) for a in args])
    text = r.stdout + r.stderr
    assert r.exit_code == code, (r.exit_code, text, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in text and "MarkupError" not in text, text
    for raw in RAW:
        assert raw not in text, (raw, text)
    return text


def test_info_prints_section_symbol_and_path_inert(hostile: dict[str, Path]) -> None:
    text = run("info", hostile["pe"])
    assert "[/]\\x1b[2J\\x9b" in text  # the section name, literally
    assert "[red]x[bold]\\x1b]0;pwned\\x07\\x1b[2J\\u202e\\x9b" in text  # the file name
    text = run("info", hostile["elf"], "--functions")
    assert "[/]\\x1b]0;p\\x07" in text  # the symbol


def test_db_list_stats_label_remove_inert(hostile: dict[str, Path], tmp_path: Path) -> None:
    db = hostile["db"]
    for columns in (200, 80):  # wide table, compact two-line layout
        text = run("db", "list", "--db", db, columns=columns)
        assert "\\x1b" in text and "[red]x" in text
    assert "[/][red]x[/red]" in run("db", "list", "--db", db)  # family, actor: literally
    text = run("db", "stats", "--db", db)
    assert "evil[/]" in text and "\\x1b]0;pwned" in text  # the store's path
    # --json keeps the values exactly (JSON writes the control characters escaped)
    r = CliRunner().invoke(main, ["db", "list", "--db", str(db), "--json"])
    assert r.exit_code == 0 and not any(raw in r.output for raw in RAW)
    assert {s["family"] for s in json.loads(r.output)["samples"]} == {HOSTILE}
    # label and remove echo the record
    copy = tmp_path / "k.db"
    shutil.copyfile(db, copy)
    sha = json.loads(r.output)["samples"][0]["sha256"]
    text = run("db", "label", sha[:16], "--source", HOSTILE, "--db", copy)
    assert "[/][red]x[/red]" in text and "\\x1b]8;;" in text
    text = run("db", "remove", sha[:16], "--db", copy)
    assert "\\x1b]0;pwned" in text


def test_match_and_compare_inert(hostile: dict[str, Path], bins: dict[str, Path]) -> None:
    text = run("match", bins["netsh_elf64"], "--db", hostile["db"])
    assert "[/][red]x[/red]" in text and "\\u202e" in text  # the family label
    text = run("compare", hostile["elf"], bins["netsh_elf64"], "--listings", "40",
               "--db", hostile["db"])
    assert "[/]\\x1b]0;p\\x07" in text  # the symbol, in the table and a listing's title
    assert "elf[red]x[bold]\\x1b]0;pwned" in text  # file name, in a listing's header


def test_strings_inert(hostile: dict[str, Path], bins: dict[str, Path]) -> None:
    text = run("strings", hostile["pe"], hostile["other"], "--no-store")
    assert "pe[red]x[bold]\\x1b]0;pwned\\x07" in text


def test_capabilities_iocs_and_rules_inert(hostile: dict[str, Path], tmp_path: Path) -> None:
    rules = tmp_path / "capa-rules"
    rules.mkdir()
    (rules / "evil.yml").write_text(
        'rule:\n  meta:\n    name: "evil [/]\\e]0;pwned\\a rule"\n    namespace: test/evil\n'
        "    scopes:\n      static: function\n      dynamic: unsupported\n"
        "  features:\n    - api: CreateProcessA\n", encoding="utf-8")
    text = run("capabilities", hostile["pe"], "--db", hostile["db"], "--capa-rules", rules)
    assert "stored as family=[/][red]x[/red]" in text and "\\x1b]0;pwned" in text
    if "evil [/]" in text:  # capa read the rule: its name printed inert
        assert "evil [/]\\x1b]0;pwned\\x07 rule" in text
    r = CliRunner().invoke(main, ["capabilities", str(hostile["pe"]), "--db",
                                  str(hostile["db"]), "--json"])
    assert r.exit_code == 0 and not any(raw in r.output for raw in RAW), r.output
    assert json.loads(r.output)["stored_labels"]["family"] == HOSTILE  # exact
    text = run("iocs", hostile["pe"], "--db", hostile["db"])
    assert "pe[red]x[bold]\\x1b" in text
    # rules made from the hostile family: its name in the rules and comments, inert
    text = run("rules", "sigma", HOSTILE, "--db", hostile["db"])
    assert "title:" in text and "pwned" in text
    text = run("rules", "sigma", HOSTILE + "?", "--db", hostile["db"],
               code=EXIT_CODES["not_found"])
    assert text.startswith("error: no stored samples of family '[/][red]x")


def test_error_handler_prints_the_message_inert(hostile: dict[str, Path]) -> None:
    missing = hostile["folder"] / f"gone{FILE_PART}[/]"
    text = run("info", missing, code=EXIT_CODES["not_found"])
    assert text.startswith("error:") and "evil[/]" in text and "\\x1b]0;pwned\\x07" in text
    r = CliRunner().invoke(main, ["info", str(missing), "--json"])
    assert not any(raw in r.output for raw in RAW)
    assert json.loads(r.output)["message"] == f"{missing}: no such file"  # exact
    # an error raised by click itself (a --db that is a folder) quotes the path inert
    text = run("db", "stats", "--db", hostile["folder"], code=2)
    assert "evil[" in text


def _cells(line: str) -> int:
    """Cells of a Markdown table row: ``|`` not escaped by a backslash."""
    return len(re.findall(r"(?<!\\)\|", line)) - 1


def test_report_terminal_and_markdown_inert(hostile: dict[str, Path], bins: dict[str, Path],
                                            tmp_path: Path) -> None:
    db = tmp_path / "md.db"
    with Kinship(db) as k:
        k.add([hostile["elf"]], Labels(family=MD_HOSTILE, actor=MD_HOSTILE,
                                       source=MD_HOSTILE, version=MD_HOSTILE))
    out = tmp_path / "out"
    text = run("report", bins["netsh_elf64"], hostile["pe"], "--out", out, "--db", db)
    assert "report.md" in text
    md = (out / "report.md").read_text(encoding="utf-8")
    for raw in RAW:
        assert raw not in md, raw
    # outside code blocks and spans, where it would be HTML or a link, it is escaped
    prose = re.sub(r"(?ms)^ *(`{3,})[^\n]*\n.*?^ *\1 *$", "", md)
    prose = re.sub(r"(`+).*?\1", "", prose)
    assert not re.search(r"(?<!\\)<script", prose)
    assert not re.search(r"(?<!\\)\]\(javascript:", prose)
    assert "\\<script\\>" in md and "\\x1b]0;pwned\\x07" in md  # shown, as text
    assert "pe\\[red\\]x\\[bold\\]\\\\x1b\\]0;pwned" in md  # a file name, escaped
    # every table row has as many cells as its header: no "|" from data splits a cell
    width = 0
    for line in md.splitlines():
        if line.startswith("|---"):
            continue
        if line.startswith("|"):
            width = width or _cells(line)
            assert _cells(line) == width, line
        else:
            width = 0
    # fences and code spans: no line of data closes a fence; the YARA/Sigma rules stay
    fences = [ln for ln in md.splitlines() if ln.lstrip().startswith("```")]
    assert len(fences) % 2 == 0


def test_markdown_helpers_render_data_as_text() -> None:
    from kinship.render.safe import md, md_code, md_fence

    assert md("a|b") == "a\\|b" and md("<b>") == "\\<b\\>" and md("[x](y)") == "\\[x\\](y)"
    assert md("# h") == "\\# h" and md("- x") == "\\- x" and md("-") == "-"
    assert md("1. x") == "1\\. x" and md("netsh_x86.exe") == "netsh_x86.exe"
    assert md("ATT&CK &lt;") == "ATT&CK \\&lt;" and md("\x1b[2J") == "\\\\x1b\\[2J"
    assert md_code("a`b") == "``a`b``" and md_code("x|y", table=True) == "`x\\|y`"
    assert md_fence("```\nx\x1b") == "````\n```\nx\\x1b\n````"


def test_log_lines_are_inert() -> None:
    import logging

    from kinship.render.safe import InertFormatter

    record = logging.LogRecord("kinship.ingest", logging.WARNING, __file__, 1,
                               "unsafe member name %s skipped", (HOSTILE,), None)
    line = InertFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert not any(raw in line for raw in RAW) and "\\x1b]0;pwned\\x07" in line


def test_artifact_email_headers_inert(tmp_path: Path) -> None:
    mail = tmp_path / f"mail{FILE_PART}.eml"
    evil = HOSTILE.replace("\\", "")
    mail.write_bytes(
        (f"From: {evil} <a@example.com>\r\nTo: b@example.org\r\nSubject: {evil}\r\n"
         f"X-Mailer: {evil}\r\nReceived-SPF: {evil.replace(' ', '')}\r\n"
         "Message-ID: <1@example.com>\r\nContent-Type: text/plain\r\n\r\n"
         "hello\r\n").encode())
    text = run("artifact", mail, "--db", tmp_path / "none.db")
    assert "Subject: [/][red]x[/red]" in text and "\\x1b]0;pwned" in text

