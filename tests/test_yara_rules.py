"""YARA rules take no loader tables, padding or runtime code; leave-one-out is reported; a
family of several programs gets one rule per group.

Runtime code is told apart with the fixtures' own sources: a function is the program's when
its name is one defined in tests/fixtures/src/{netsh,other}.c (the PE fixtures keep COFF
symbols); every other function (mingw-w64 start-up, printf, gdtoa...) is passed to the
generator as library code, which is what ``Kinship.library_functions`` gives with a runtime
baseline in the store.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import iced_x86 as iced
import pefile
import pytest
import yara

from kinship.pipeline import AnalysedSample
from kinship.rules.yara_gen import FamilyRule, _is_padding, generate_family_rule
from kinship.rules.yara_validate import sha256_file

SRC = Path(__file__).resolve().parent / "fixtures" / "src"
NETSH = ["netsh_x86.exe", "netsh_x64.exe"]
OTHER = ["other_x86.exe", "other_x64.exe"]
CRT = ["crt_x86.exe", "crt_x64.exe"]
# Strings of the mingw-w64 runtime that every PE fixture carries.
RUNTIME_TEXT = ("pseudo relocation", "Mingw-w64 runtime failure", "_matherr", "VirtualQuery",
                "UNDERFLOW", "GNU C")


@cache
def own_functions() -> frozenset[str]:
    """Names of the functions defined in our C sources."""
    names: set[str] = set()
    for src in ("netsh.c", "other.c"):
        for line in (SRC / src).read_text(encoding="utf-8").splitlines():
            m = re.match(r"^[A-Za-z][^;=]*?\b(\w+)\(", line)
            if m and not line.rstrip().endswith(";"):
                names.add(m.group(1))
    return frozenset(names)


def _own(name: str | None) -> bool:
    if not name:
        return False
    base = name.split(".", 1)[0].split("@", 1)[0]
    return base in own_functions() or (base.startswith("_") and base[1:] in own_functions())


def runtime_functions(sample: AnalysedSample) -> set[int]:
    """Library oracle: every function that is not one of ours."""
    assert sample.disassembly is not None
    return {f.va for f in sample.disassembly.functions if not _own(f.name)}


def _files(bins: dict[str, Path], names: list[str]) -> dict[str, Path]:
    return {sha256_file(bins[n]): bins[n] for n in names}


def _string_hits(rule: FamilyRule, path: Path) -> list[tuple[str, int, bytes]]:
    """(identifier, file offset, matched bytes) of every string instance of the rule."""
    out = []
    for m in yara.compile(source=rule.text).match(str(path)):
        for s in m.strings:
            out += [(s.identifier, i.offset, bytes(i.matched_data)) for i in s.instances]
    return out


def test_own_functions_parsed() -> None:
    names = own_functions()
    assert {"run_command", "decode_config", "main", "crc32_update", "rle_decode"} <= names
    assert "printf" not in names and "snprintf" not in names


def test_padding_instructions() -> None:
    def pad(hex_: str, bitness: int) -> bool:
        return _is_padding(iced.Decoder(bitness, bytes.fromhex(hex_)).decode(), bitness)

    for h in ("90", "CC", "66 90", "0F 1F 00", "66 0F 1F 44 00 00", "0F 1F 84 00 00 00 00 00"):
        assert pad(h.replace(" ", ""), 64), h
    assert pad("8D7600", 32) and pad("8DB600000000", 32) and pad("89F6", 32)
    assert not pad("89F6", 64)  # mov esi, esi clears the upper half in 64-bit code
    for h in ("488D4008", "55", "C3", "8D4601", "89C6"):
        assert not pad(h, 64) and not pad(h, 32), h


@pytest.mark.parametrize("library", [True, False], ids=["runtime-known", "no-library"])
def test_no_string_from_tables_debug_or_padding(bins: dict[str, Path], library: bool) -> None:
    members = _files(bins, [*NETSH, "netsh_v2_x64.exe", "netsh_x64_dll.dll"])
    rule = generate_family_rule("netsh", members, _files(bins, OTHER),
                                library=runtime_functions if library else None)
    assert rule is not None and rule.validation is not None and rule.validation.ok
    n_hits = 0
    for path in members.values():
        pe = pefile.PE(str(path), fast_load=True)
        secs = [(s.Name.rstrip(b"\0").decode(), s.PointerToRawData, s.SizeOfRawData,
                 s.Misc_VirtualSize) for s in pe.sections]
        # what there was to avoid: strings in the debug sections, padding in the code
        debug = [a for name, a, n, _ in secs if name.startswith("/")]
        assert debug and re.search(rb"GNU C\d\d", path.read_bytes()), path
        for ident, off, data in _string_hits(rule, path):
            n_hits += 1
            inside = [(name, a, n, v) for name, a, n, v in secs if a <= off < a + n]
            assert inside, f"{path.name}: {ident} at 0x{off:x} outside every section"
            name, start, _, vsize = inside[0]
            assert name != ".reloc" and name != ".idata", (path.name, ident, name)
            assert not name.startswith(("/", ".debug")), (path.name, ident, name)
            assert off + len(data) <= start + vsize, f"{ident} in {name}'s alignment slack"
            for run in (b"\xcc" * 3, b"\x90" * 3, b"\x00" * 16):
                assert run not in data, (path.name, ident, data.hex())
    assert n_hits > 0


def test_no_runtime_code_or_strings_when_runtime_known(bins: dict[str, Path]) -> None:
    members = _files(bins, [*NETSH, "netsh_v2_x64.exe"])
    rule = generate_family_rule("netsh", members, {}, library=runtime_functions)
    assert rule is not None
    for s in rule.strings:
        assert not any(t in s for t in RUNTIME_TEXT), s
    assert rule.code, "own functions give code patterns"
    for c in rule.code:
        assert _own(c.function_name), c.function_name
    # without that knowledge and with no other family to compare with, runtime material is
    # all the generator has to tell the samples by: the knowledge is what removes it
    plain = generate_family_rule("netsh", members, {})
    assert plain is not None
    assert any(not _own(c.function_name) for c in plain.code) or any(
        t in s for s in plain.strings for t in RUNTIME_TEXT)


def test_no_runtime_strings_even_through_a_pointer_table(bins: dict[str, Path]) -> None:
    """With the programs' own strings in other families (their ELF builds), what is left to
    tell the PE builds by includes the runtime's messages that its code reaches only through
    a table of pointers (_matherr's "... (UNDERFLOW)"): none may become rule material."""
    members = _files(bins, [*NETSH, *OTHER])
    others = _files(bins, ["netsh_elf64", "other_elf64"])
    rule = generate_family_rule("suite", members, others, library=runtime_functions)
    assert rule is not None and rule.groups
    for g in rule.groups:
        for s in g.strings:
            assert not any(t in s for t in RUNTIME_TEXT), (g.name, s)
        assert all(_own(c.function_name) for c in g.code)
    # the runtime text is there to be avoided, in the PE files' data
    assert b"(UNDERFLOW)" in bins["netsh_x86.exe"].read_bytes()


def test_leave_one_out_reports_what_a_one_build_rule_misses(bins: dict[str, Path]) -> None:
    members = _files(bins, NETSH)
    others = _files(bins, OTHER)
    rule = generate_family_rule("netsh", members, others, library=runtime_functions)
    assert rule is not None and rule.leave_one_out is not None
    loo = {h.sample: h for h in rule.leave_one_out.samples}
    assert set(loo) == set(members)
    for held, path in members.items():
        # the rule a user would get from the other build alone, scanned over this build
        (rest,) = [h for h in members if h != held]
        alone = generate_family_rule("netsh", {rest: members[rest]}, others,
                                     library=runtime_functions)
        expected = alone is not None and bool(yara.compile(source=alone.text).match(str(path)))
        assert loo[held].matched == expected, path.name
        assert loo[held].trained_on == 1
        assert loo[held].matched or loo[held].note
    tpr = rule.leave_one_out.tpr
    assert tpr == sum(h.matched for h in loo.values()) / 2
    d = rule.to_dict()["leave_one_out"]
    assert d["held_out"] == 2 and d["matched"] == sum(h.matched for h in loo.values())


def test_training_tpr_one_but_leave_one_out_misses_an_unrelated_build(
        bins: dict[str, Path]) -> None:
    """Two programs under one label: the rules match both (TPR 1.0 on what they were made
    from), but neither program's rule catches the other: leave-one-out says so."""
    members = _files(bins, ["netsh_x86.exe", "other_x64.exe"])
    rule = generate_family_rule("mixed", members, _files(bins, CRT),
                                library=runtime_functions)
    assert rule is not None and rule.validation is not None
    assert rule.validation.tpr == 1.0 and rule.validation.fpr == 0.0
    assert rule.leave_one_out is not None and rule.leave_one_out.tpr == 0.0
    assert sorted(rule.leave_one_out.missed) == sorted(members)
    assert any("leave-one-out TPR 0.000" in line for line in rule.summary(2))


def test_family_of_two_programs_gets_one_rule_per_group(bins: dict[str, Path]) -> None:
    netsh, other = _files(bins, NETSH), _files(bins, OTHER)
    members = {**netsh, **other}
    others = _files(bins, CRT)
    rule = generate_family_rule("suite", members, others, library=runtime_functions)
    assert rule is not None and rule.validation is not None
    assert rule.validation.tpr == 1.0 and rule.validation.fpr == 0.0
    assert len(rule.groups) == 2 and not rule.uncovered
    assert {frozenset(g.members) for g in rule.groups} == {frozenset(netsh), frozenset(other)}
    assert len({g.name for g in rule.groups}) == 2
    for g in rule.groups:
        compiled = yara.compile(source=g.text)
        assert g.validation is not None and g.validation.ok
        for h, p in members.items():
            assert bool(compiled.match(str(p))) == (h in g.members), (g.name, p.name)
        # per group leave-one-out: the pair shares the program, so each catches the other
        assert g.leave_one_out is not None
        assert {h.sample for h in g.leave_one_out.samples} == set(g.members)
    # the family's text holds both rules; JSON keeps the old fields and adds the groups
    assert {m.rule for p in members.values()
            for m in yara.compile(source=rule.text).match(str(p))} == {g.name for g in
                                                                       rule.groups}
    d = rule.to_dict()
    assert {"family", "name", "text", "strings", "code", "validation", "dropped"} <= set(d)
    assert [sorted(g["members"]) for g in d["groups"]] == [sorted(g.members)
                                                           for g in rule.groups]
