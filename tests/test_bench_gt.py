
from bench.disasm_vs_smda import BinaryResult, ToolRun, totals
from bench.gt import (
    AddressRange,
    CorpusEntry,
    GroundTruth,
    SubsetSpec,
    is_runtime_label,
    score_starts,
    select_subset,
)


def gt(complete=True):
    return GroundTruth("x", "symtab" if complete else "dynsym", frozenset({0x1000, 0x1100, 0x1200}),
                       frozenset({0x900}))


def test_score_complete():
    s = score_starts([0x1000, 0x1100, 0x900, 0x1500, 0x2005], gt(), [AddressRange(0x2000, 0x2010)])
    assert (s.true_positives, s.false_negatives, s.false_positives) == (2, 1, 1)
    assert abs(s.recall - 2 / 3) < 1e-9 and s.precision == 2 / 3


def test_score_partial_and_shift():
    s = score_starts([0x1000 - 0x400000, 0x1200 - 0x400000, 5], gt(False), shifts=(0, 0x400000))
    assert s.shift == 0x400000 and s.true_positives == 2 and s.false_positives is None
    assert s.precision is None


def test_runtime_labels():
    assert is_runtime_label("_init") and is_runtime_label("__mingw_foo")
    assert not is_runtime_label("lua_pushnil")


def _e(i, fmt, arch, fam, src, size=100_000):
    return CorpusEntry(str(i), fam, "c", "1", "s", fmt, arch, "v", size, f"{i:064x}", f"p{i}",
                       src, 10)


def test_select_subset_cells_and_sizes():
    rows = []
    for f, full, part in (("ELF", "symtab", "dynsym"), ("PE", "coff", "exports")):
        for a in ("x86", "x64"):
            for fam in ("lua5.1", "lua5.2", "py-a", "wine-b"):
                rows += [(f, a, fam, full), (f, a, fam, part)]
    es = [_e(i, *r) for i, r in enumerate(rows)]
    es.append(_e(999, "ELF", "x64", "big", "symtab", size=10**8))
    sel = select_subset(es, SubsetSpec(complete_per_cell=2, partial_per_cell=1))
    assert len(sel) == 12 and all(e.family != "big" for e in sel)
    for cell in ("ELF-x86", "ELF-x64", "PE-x86", "PE-x64"):
        cs = [e for e in sel if e.cell == cell and e.complete_gt]
        assert len(cs) == 2 and len({e.family.split("-")[0].rstrip("0123456789.") for e in cs}) == 2
    assert select_subset(es, SubsetSpec(complete_per_cell=2, partial_per_cell=1)) == sel


def test_totals_like_for_like():
    e = _e(1, "ELF", "x64", "f", "symtab")
    b1 = BinaryResult(e, "p", 1, "symtab", 3, 0, {
        "kinship": ToolRun("kinship", "ok", 1, 1, 10, 1000, score=score_starts([0x1000], gt())),
        "smda": ToolRun("smda", "ok", 2, 2, 10, 1000, score=score_starts([0x1000, 0x1100], gt()))})
    b2 = BinaryResult(e, "p", 1, "symtab", 3, 0, {
        "kinship": ToolRun("kinship", "ok", 1, 1, 10, 1000),
        "smda": ToolRun("smda", "error")})
    t = totals([b1, b2], ["kinship", "smda"])
    assert t["kinship"].n_binaries == 1 and t["kinship"].insn_per_cpu_s == 1000
    assert t["smda"].recall == 2 / 3 and t["smda"].precision_complete == 1.0
