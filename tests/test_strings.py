"""Strings: extraction (offsets, VAs, referencing functions, stack strings), rarity, the store
table, string reuse in `match`, and the `kinship strings --shared` view."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kinship.api import Kinship
from kinship.cli import register
from kinship.cli.evidence import shared_strings_of
from kinship.evidence.shared_strings import SharedStringsResult
from kinship.match.result import MatchResult
from kinship.pipeline import Labels, SampleInput, analyse
from kinship.store import sqlite as sqlite_mod
from kinship.store.base import StoredString
from kinship.store.memory import MemoryStore
from kinship.store.sqlite import SQLiteStore
from kinship.strings.extract import Encoding
from kinship.strings.rarity import intrinsic_weight

ADD = 'netsh firewall add portopening TCP %d "%s"'
DELETE = "netsh firewall delete portopening TCP %d"
NETSH_BUILDS = ("netsh_x86.exe", "netsh_x64.exe", "netsh_v2_x64.exe", "netsh_elf64")
STACK_C = r"""
#include <stdio.h>
int main(void) {
    volatile char cmd[24];
    cmd[0]='n';cmd[1]='e';cmd[2]='t';cmd[3]='s';cmd[4]='h';cmd[5]=' ';cmd[6]='f';cmd[7]='i';
    cmd[8]='r';cmd[9]='e';cmd[10]='w';cmd[11]='a';cmd[12]='l';cmd[13]='l';cmd[14]=0;
    puts((const char *)cmd);
    return 0;
}
"""


@pytest.mark.parametrize("name", NETSH_BUILDS)
def test_templates_found_with_provenance(bins: dict[str, Path], name: str) -> None:
    s = analyse(SampleInput(name=name, path=bins[name]), keep=True)
    assert s.binary is not None and s.disassembly is not None
    names = {f.va: f.name for f in s.disassembly.functions}
    by_text = s.strings.by_text()
    for text, fn in ((ADD, "open_port"), (DELETE, "close_port")):
        occ = by_text[text][0]
        assert occ.encoding is Encoding.ASCII and occ.offset is not None and occ.va is not None
        assert s.binary.data[occ.offset : occ.offset + len(text)] == text.encode()
        assert s.binary.va_to_offset(occ.va) == occ.offset
        assert occ.section in (".rdata", ".rodata")
        assert occ.functions, "the routine that formats the command references it"
        assert any(fn in (names.get(va) or "") for va in occ.functions)


def test_rarity_generic_strings_count_for_nothing() -> None:
    for text in ("%s", "GetProcAddress", "kernel32.dll", "KERNEL32.dll", "(null)", "%d.%d",
                 "GLIBC_2.14", "__register_frame_info", ".text"):
        assert intrinsic_weight(text) == 0.0, text
    assert intrinsic_weight(ADD) == 1.0
    assert intrinsic_weight("update.example.invalid") > 0.5


@pytest.mark.parametrize("triplet", ["i686-w64-mingw32", "x86_64-w64-mingw32"])
def test_stack_strings(tmp_path: Path, triplet: str) -> None:
    cc = shutil.which(f"{triplet}-gcc")
    if cc is None:
        pytest.skip(f"{triplet}-gcc not installed")
    src = tmp_path / "stack.c"
    src.write_text(STACK_C)
    exe = tmp_path / "stack.exe"
    subprocess.run([cc, "-O0", "-o", str(exe), str(src)], check=True, capture_output=True)
    s = analyse(SampleInput(name="stack.exe", path=exe), keep=True)
    stack = [x for x in s.strings.strings if x.encoding is Encoding.STACK]
    hit = [x for x in stack if x.text == "netsh firewall"]
    assert hit and hit[0].functions and hit[0].va is not None
    assert s.binary is not None and s.binary.is_executable(hit[0].va)


def _store_with_refs(path: Path, bins: dict[str, Path]) -> Kinship:
    k = Kinship(path)
    k.add([bins["crt_x86.exe"], bins["crt_x64.exe"], bins["crt_elf64"]],
          Labels(is_library=True))
    k.add([bins["netsh_x86.exe"], bins["netsh_elf64"]],
          Labels(family="netsh", actor="Example Actor", source="Vendor 2016"))
    k.add([bins["other_x86.exe"], bins["other_elf64"]], Labels(family="other"))
    return k


def test_store_strings_and_postings(tmp_path: Path, bins: dict[str, Path]) -> None:
    with _store_with_refs(tmp_path / "k.db", bins) as k:
        rec = k.store.samples(family="netsh")[0]
        stored = k.store.sample_strings(rec.sha256)
        assert ADD in {s.text for s in stored} and "%s" not in {s.text for s in stored}
        post = k.store.string_postings([ADD, "not in any sample"])
        assert set(post) == {ADD}
        assert {p.family for p in post[ADD]} == {"netsh"}
        assert all(p.source == "Vendor 2016" and p.string.offset for p in post[ADD])
        vq = "  VirtualQuery failed for %d bytes at address %p"
        crt = k.store.string_postings([vq, "Mingw-w64 runtime failure:"])
        assert any(p.is_library for p in crt[vq])
        # a toolchain banner weighs nothing (strings/rarity.py): not stored as evidence
        assert "Mingw-w64 runtime failure:" not in crt


def test_sqlite_migrates_v1_to_strings(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    SQLiteStore(path).close()
    con = sqlite3.connect(path)
    con.execute("DROP TABLE sample_strings")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with SQLiteStore(path) as s:
        assert s.stats().schema_version == sqlite_mod.SCHEMA_VERSION == 2
    con = sqlite3.connect(path)
    assert "encoding" in {r[1] for r in con.execute("PRAGMA table_info(sample_strings)")}
    con.close()


def test_match_combines_string_reuse(tmp_path: Path, bins: dict[str, Path]) -> None:
    with _store_with_refs(tmp_path / "k.db", bins) as k:
        res = k.match(bins["netsh_x64.exe"])
    assert res.verdict.family == "netsh"
    top = res.families[0]
    assert top.string_score > 0 and top.code_score is not None and top.score >= top.code_score
    texts = [s.text for s in res.shared_strings]
    assert ADD in texts and DELETE in texts
    assert "Mingw-w64 runtime failure:" not in texts
    add = next(s for s in res.shared_strings if s.text == ADD)
    assert add.query.offset is not None and add.query.functions
    assert {r.family for r in add.references} == {"netsh"}
    assert all(r.source == "Vendor 2016" for r in add.references)
    again = MatchResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert again == res
    for key in ("sample", "verdict", "families", "function_matches", "seconds"):
        assert key in res.to_dict()


def test_shared_strings_view(tmp_path: Path, bins: dict[str, Path]) -> None:
    files = [bins[n] for n in ("netsh_x86.exe", "netsh_x64.exe", "netsh_v2_x64.exe")]
    with _store_with_refs(tmp_path / "k.db", bins) as k:
        res = shared_strings_of(k, files, None)
    texts = [r.text for r in res.strings]
    assert ADD in texts and DELETE in texts
    for common in ("%s", "kernel32.dll", "KERNEL32.dll", "GetProcAddress",
                   "Mingw-w64 runtime failure:", "Unknown error"):
        assert common not in texts
    row = next(r for r in res.strings if r.text == ADD)
    assert len(row.occurrences) == 3
    for o in row.occurrences:
        assert o.offset is not None and o.hexdump is not None
        lo = o.offset - o.hexdump.start
        assert o.hexdump.data[lo : lo + len(ADD)] == ADD.encode()
        assert o.functions
    again = SharedStringsResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert again == res


def test_cli_strings_command(tmp_path: Path, bins: dict[str, Path]) -> None:
    @click.group()
    def main() -> None:
        pass

    register(main)
    runner = CliRunner()
    files = [str(bins[n]) for n in ("netsh_x86.exe", "netsh_x64.exe")]
    r = runner.invoke(main, ["strings", *files, "--shared", "--json", "--db",
                             str(tmp_path / "k.db")])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert ADD in [s["text"] for s in d["strings"]]
    r = runner.invoke(main, ["strings", *files, "--shared", "--no-store"])
    assert r.exit_code == 0 and "portopening" in r.output and "|" in r.output


def test_stored_string_values_in_memory_store() -> None:
    from kinship.store.model import SampleRecord

    m = MemoryStore()
    rec = SampleRecord("a" * 64, "b" * 32, "c" * 40, "x", "pe", "x86", 1, family="F")
    m.add_sample(rec, [], strings=[StoredString(ADD, "ascii", 16, 0x401000, ".rdata"),
                                   StoredString(ADD, "ascii", 99, None, None)])
    assert m.sample_strings("a" * 64) == [StoredString(ADD, "ascii", 16, 0x401000, ".rdata")]
    post = m.string_postings([ADD])[ADD]
    assert post[0].family == "F" and post[0].string.offset == 16
