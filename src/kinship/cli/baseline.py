"""``kinship baseline list|build|add``: the compiler-runtime signature packs every store uses."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from kinship.baseline.pack import PACK_SUFFIX, BaselinePack, LibraryInfo
from kinship.baseline.registry import discover, enabled, user_dirs
from kinship.cli.common import emit
from kinship.exceptions import UsageError
from kinship.render.baseline import render_added, render_built, render_packs


def _entry_dict(e: Any) -> dict[str, Any]:
    p: BaselinePack | None = e.pack
    return {
        "path": str(e.path),
        "builtin": e.builtin,
        "used": p is not None and enabled(),
        "error": e.error or None,
        "name": p.name if p else None,
        "description": p.description if p else None,
        "functions": len(p) if p else 0,
        "libraries": [{"label": lib.label, "functions": n, "toolchain": lib.toolchain,
                       "format": lib.format, "arch": lib.arch, "source": lib.source}
                      for lib, n in zip(p.libraries, p.library_counts().values(), strict=True)]
        if p else [],
    }


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def list_cmd(as_json: bool) -> None:
    """List the baseline packs found (built-in, then the user's folder) and what they cover.

    \b
    Examples:
      kinship baseline list
      kinship baseline list --json
    """
    from kinship.pipeline import feature_params

    entries = discover(feature_params())
    if as_json:
        emit({"enabled": enabled(), "user_dirs": [str(d) for d in user_dirs()],
              "packs": [_entry_dict(e) for e in entries]})
        return
    render_packs(Console(), entries, enabled(), user_dirs())


@click.command("build")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Pack name, e.g. delphi-11.")
@click.option("--library", "library", default="", help='Library label, e.g. "Delphi 11 RTL".')
@click.option("--toolchain", default="", help="Compiler/linker and version.")
@click.option("--exclude", help="Regex of symbol names that are the programs' own code "
                               r"(e.g. '^(main|my_.*)$'); the rest is runtime.")
@click.option("--min-programs", default=1, show_default=True,
              help="Keep only functions found in at least this many of FILES (unrelated "
                   "programs of one toolchain: what they share is runtime).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help=f"Pack file (default ./<name>{PACK_SUFFIX}).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def build_cmd(files: tuple[Path, ...], name: str, library: str, toolchain: str,
              exclude: str | None, min_programs: int, out: Path | None, as_json: bool) -> None:
    """Make a baseline pack from programs built with one toolchain.

    \b
    Compile a few small programs (a hello world, one using the runtime's common functions)
    with the toolchain, then:
    Examples:
      kinship baseline build hello.exe probe.exe --name delphi-11 --library "Delphi 11 RTL"
      kinship baseline build a.exe b.exe c.exe --name go-1.21 --min-programs 2
      kinship baseline build probe.exe --name mytc --exclude '^(main|probe_.*)$' --out mytc.kbl.npz
    """
    from kinship.baseline.build import BuildInput, build_pack

    lib = LibraryInfo(library or name, toolchain=toolchain)
    rep = build_pack(name, [lib], [BuildInput(f, 0) for f in files], exclude=exclude,
                     min_programs=min_programs)
    if len(rep.pack) == 0:
        raise UsageError("no runtime functions left (check --exclude and --min-programs)")
    dest = out or Path(f"{name}{PACK_SUFFIX}")
    rep.pack.save(dest)
    doc = {"path": str(dest), "name": name, "functions": len(rep.pack), "files": rep.n_files,
           "failed": [{"file": f, "reason": r} for f, r in rep.failed]}
    if as_json:
        emit(doc)
        return
    render_built(Console(), dest, rep)


@click.command("add")
@click.argument("packs", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def add_cmd(packs: tuple[Path, ...], as_json: bool) -> None:
    """Install baseline packs into the user's folder (every store then uses them).

    \b
    Examples:
      kinship baseline add delphi-11.kbl.npz
      KINSHIP_BASELINES=/srv/kinship/baselines kinship baseline add go.kbl.npz
    """
    from kinship.pipeline import feature_params

    dest_dir = user_dirs()[0]
    dest_dir.mkdir(parents=True, exist_ok=True)
    added = []
    for p in packs:
        pack = BaselinePack.load(p)  # refuses a damaged file before it is installed
        if not pack.compatible(feature_params()):
            raise UsageError(f"{p}: made with other feature parameters; rebuild it with "
                             "`kinship baseline build`")
        dest = dest_dir / f"{pack.name}{PACK_SUFFIX}"
        shutil.copyfile(p, dest)
        added.append({"name": pack.name, "path": str(dest), "functions": len(pack)})
    if as_json:
        emit({"added": added})
        return
    render_added(added)


@click.group()
def baseline() -> None:
    """Compiler-runtime baselines: function signatures recognised as library code.

    \b
    kinship ships packs for MinGW-w64, GCC/glibc/clang (ELF) and MSVC's static runtime;
    add your own for other toolchains (Delphi, Go, ...).
    Examples:
      kinship baseline list
      kinship baseline build hello.exe probe.exe --name delphi-11
      kinship baseline add delphi-11.kbl.npz
    """


baseline.add_command(list_cmd)
baseline.add_command(build_cmd)
baseline.add_command(add_cmd)

COMMANDS: tuple[click.Command, ...] = (baseline,)
