"""Build kinship's built-in baseline packs (src/kinship/baseline/data/*.kbl.npz).

Reproducible from registry packages only (Debian's compilers, PyPI wheels); nothing built here
is committed except the packs, which hold hashes and MinHash sketches, not code:

* ``mingw-w64``: the probes in ``probes/`` compiled with Debian's i686/x86_64-w64-mingw32-gcc
  (console, ``__USE_MINGW_ANSI_STDIO``, DLL, GUI, threads; -O0/-O2/-Os). Every function not
  named ``probe_*``/``main``/``DllMain``/``WinMain`` is MinGW-w64 CRT, libgcc or winpthreads.
* ``gnu-elf``: the probes compiled with gcc and clang, -m32/-m64, PIE, non-PIE and ``-static``:
  glibc start files (crt1/crti/crtbegin), libgcc, and for ``-static`` glibc itself.
* ``msvc-pypi``: MSVC-built C extensions (.pyd) from win32/win_amd64 wheels of projects that are
  not in kinship's evaluation corpus; a function present in >= 3 different projects is MSVC's
  statically linked runtime (vcruntime/UCRT start-up) or shared static-library code (Cython).

Usage (Debian 12 with the packages of .ci/apt-packages.txt; network for the wheels)::

    python tools/baseline/build_packs.py [--only mingw,elf,msvc] [--work DIR] [--out DIR]

Each pack records the compiler versions and the SHA-256 of every input file.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from kinship.baseline.build import BuildInput, build_pack
from kinship.baseline.pack import PACK_SUFFIX, LibraryInfo

HERE = Path(__file__).resolve().parent
PROBES = HERE / "probes"
DEFAULT_OUT = HERE.parents[1] / "src" / "kinship" / "baseline" / "data"
OWN = r"^(probe_.*|main|DllMain|WinMain|wmain|wWinMain)$"
MAX_TOOL_SECONDS = 300

# Projects whose win32/win_amd64 wheels carry small MSVC-built extensions and which are not
# families of the evaluation corpus (../shared/corpus: pycryptodome, brotli, msgpack,
# markupsafe, simplejson are; these are not).
WHEEL_PROJECTS = ("wrapt", "ujson", "frozenlist", "multidict", "yarl", "bitarray", "psutil",
                  "zope.interface", "regex", "pyyaml")
WHEEL_PYTHONS = ("3.8", "3.12")  # two MSVC generations (14.2x and 14.3x toolsets)
WHEEL_PLATFORMS = {"win32": "x86", "win_amd64": "x64"}
MIN_PROJECTS = 3

log = logging.getLogger("build_packs")


def run(cmd: Sequence[str]) -> str:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=MAX_TOOL_SECONDS,
                       check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()[:400]}")
    return r.stdout


def tool_version(tool: str) -> str:
    return run([tool, "--version"]).splitlines()[0].strip()


def compile_one(cc: str, sources: Sequence[str], flags: Sequence[str], out: Path,
                strip: str) -> BuildInput | None:
    cmd = [cc, *(str(PROBES / s) for s in sources), *flags, "-o", str(out)]
    try:
        run(cmd)
        stripped = out.with_name(out.name + ".stripped")
        shutil.copyfile(out, stripped)
        run([strip, "--strip-all", str(stripped)])
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        log.warning("skipped %s: %s", out.name, e)
        return None
    return BuildInput(out, 0, program=out.name, stripped=stripped)


def build_mingw(work: Path, out: Path) -> None:
    libs, inputs = [], []
    variants = [
        ("hello", ["probe_hello.c"], []),
        ("libc", ["probe_libc.c"], []),
        ("ansi", ["probe_libc.c"], ["-D__USE_MINGW_ANSI_STDIO=1"]),
        ("win", ["probe_win.c"], []),
        ("winansi", ["probe_win.c"], ["-D__USE_MINGW_ANSI_STDIO=1"]),
        ("dll", ["probe_win.c"], ["-DPROBE_DLL", "-shared"]),
        ("gui", ["probe_win.c"], ["-DPROBE_GUI", "-mwindows"]),
        ("static", ["probe_win.c"], ["-static"]),
        # the stdio wrappers mingw's headers define inline (printf, fprintf, snprintf...) are
        # emitted into the program's own object when not inlined: keep them out of line once
        ("noinline", ["probe_libc.c"], ["-fno-inline", "-fno-ipa-cp", "-fno-ipa-sra"]),
        ("noinlinew", ["probe_win.c"], ["-fno-inline", "-fno-ipa-cp", "-fno-ipa-sra"]),
    ]
    for lib_i, (triplet, arch) in enumerate((("i686-w64-mingw32", "x86"),
                                             ("x86_64-w64-mingw32", "x64"))):
        cc, strip = f"{triplet}-gcc", f"{triplet}-strip"
        version = tool_version(cc)
        libs.append(LibraryInfo(
            "MinGW-w64 runtime (CRT, libgcc, winpthreads)", toolchain=version,
            version=version.split()[-1], arch=arch, format="PE",
            source="Debian packages gcc-mingw-w64, mingw-w64-common"))
        for name, srcs, extra in variants:
            for opt in ("-O0", "-O2", "-Os"):
                dst = work / f"mingw-{arch}-{name}{opt}.{'dll' if name == 'dll' else 'exe'}"
                item = compile_one(cc, srcs, [opt, "-Wl,--no-insert-timestamp", *extra], dst,
                                   strip)
                if item is not None:
                    inputs.append(BuildInput(item.path, lib_i, item.program, item.stripped))
    gcc = tool_version(f"{'x86_64-w64-mingw32'}-gcc").split()[-1]
    write(build_pack(f"mingw-w64-gcc{gcc.split('-')[0].split('.')[0]}", libs, inputs,
                     exclude=OWN,
                     description=f"MinGW-w64 runtime functions (GCC {gcc}, Debian), i686 and "
                                 "x86_64: CRT start-up, printf family, libgcc, winpthreads"),
          out)


def build_elf(work: Path, out: Path) -> None:
    libs, inputs = [], []
    compilers = [c for c in ("gcc", "clang") if shutil.which(c)]
    versions = "; ".join(tool_version(c) for c in compilers)
    groups = {("x86", False): 0, ("x64", False): 1, ("x86", True): 2, ("x64", True): 3}
    for (arch, static), _ in sorted(groups.items(), key=lambda kv: kv[1]):
        libs.append(LibraryInfo(
            "glibc static libc + libgcc" if static
            else "glibc/GCC start files + libgcc (dynamic ELF)",
            toolchain=versions, version=_glibc_version(), arch=arch, format="ELF",
            source="Debian packages libc6-dev, libc6-dev-i386, libgcc-12-dev, gcc-multilib"))
    programs = [("hello", ["probe_hello.c"], []), ("libc", ["probe_libc.c"], ["-lm"]),
                ("threads", ["probe_threads.c"], ["-pthread"])]
    for cc in compilers:
        for arch, mflag in (("x86", "-m32"), ("x64", "-m64")):
            for link, lflags in (("pie", ["-pie", "-fPIE"]), ("nopie", ["-no-pie"]),
                                 ("static", ["-static"])):
                for name, srcs, extra in programs:
                    for opt in ("-O0", "-O2"):
                        dst = work / f"{cc}-{arch}-{link}-{name}{opt}"
                        item = compile_one(cc, srcs, [opt, mflag, *lflags, *extra], dst, "strip")
                        if item is not None:
                            lib = groups[(arch, link == "static")]
                            inputs.append(BuildInput(item.path, lib, item.program,
                                                     item.stripped))
    write(build_pack("gnu-elf", libs, inputs, exclude=OWN,
                     description="GCC/glibc ELF runtime code (start files, libgcc, static "
                                 f"glibc {_glibc_version()}), gcc and clang, i386 and x86-64"),
          out)


def _glibc_version() -> str:
    try:
        return run(["ldd", "--version"]).splitlines()[0].split()[-1]
    except (RuntimeError, OSError, IndexError):
        return ""


def build_msvc(work: Path, out: Path) -> None:
    wheels = work / "wheels"
    wheels.mkdir(exist_ok=True)
    for project in WHEEL_PROJECTS:
        for py in WHEEL_PYTHONS:
            for plat in WHEEL_PLATFORMS:
                try:
                    run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                         "--only-binary=:all:", "--platform", plat, "--python-version", py,
                         "-d", str(wheels), project])
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    log.warning("no %s wheel for %s %s: %s", project, py, plat, e)
    libs = [LibraryInfo("MSVC runtime (vcruntime/UCRT start-up, static) and shared static code",
                        toolchain="Microsoft Visual C++ (as built into PyPI wheels)",
                        version="14.2x-14.3x", arch=arch, format="PE",
                        source="PyPI wheels: " + ", ".join(WHEEL_PROJECTS))
            for arch in ("x86", "x64")]
    inputs = []
    ext = work / "pyd"
    ext.mkdir(exist_ok=True)
    for whl in sorted(wheels.glob("*.whl")):
        project = whl.name.split("-")[0].lower()
        arch = "x64" if "win_amd64" in whl.name else "x86"
        with zipfile.ZipFile(whl) as z:
            for info in z.infolist():
                if info.filename.endswith(".pyd") and info.file_size < 16 << 20:
                    dst = ext / f"{whl.stem}__{Path(info.filename).name}"
                    dst.write_bytes(z.read(info))
                    inputs.append(BuildInput(dst, 0 if arch == "x86" else 1, program=project))
    write(build_pack("msvc-pypi", libs, inputs, min_programs=MIN_PROJECTS,
                     description="MSVC statically linked runtime functions found in >= "
                                 f"{MIN_PROJECTS} unrelated projects' wheels (win32, win_amd64)"),
          out)


def write(report: object, out: Path) -> None:
    from kinship.baseline.build import BuildReport

    assert isinstance(report, BuildReport)
    pack = report.pack
    path = out / f"{pack.name}{PACK_SUFFIX}"
    pack.save(path)
    print(f"{path}: {len(pack)} functions from {report.n_files} files "
          f"({report.n_candidates} candidates, {len(report.failed)} failed), "
          f"{path.stat().st_size // 1024} KiB; {pack.library_counts()}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="mingw,elf,msvc")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="kinship-baseline-"))
    work.mkdir(parents=True, exist_ok=True)
    steps = {"mingw": build_mingw, "elf": build_elf, "msvc": build_msvc}
    for name in args.only.split(","):
        d = work / name
        d.mkdir(exist_ok=True)
        steps[name](d, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
