"""Build kinship's built-in baseline packs (src/kinship/baseline/data/*.kbl.npz).

Reproducible from registry packages only (Debian's compilers, PyPI wheels); nothing built here
is committed except the packs, which hold hashes and MinHash sketches, not code:

* ``mingw-w64``: the probes in ``probes/`` compiled with Debian's i686/x86_64-w64-mingw32-gcc
  (console, ``__USE_MINGW_ANSI_STDIO``, DLL, GUI, threads; -O0/-O2/-Os). Every function not
  named ``probe_*``/``main``/``DllMain``/``WinMain`` is MinGW-w64 CRT, libgcc or winpthreads.
  ``mingw-bullseye``/``mingw-trixie``: the same with the runtime of Debian 11 (GCC 10) and 13
  (GCC 14), downloaded with ``apt-get download`` (nothing installed).
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
import functools
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
        # ld's automatic DLL image base hashes the output path: fix it (reproducible packs)
        ("dll", ["probe_win.c"], ["-DPROBE_DLL", "-shared", "-Wl,--image-base=0x10000000"]),
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
            version=f"{version.split()[-1]} (Debian bookworm)", arch=arch, format="PE",
            source="Debian packages gcc-mingw-w64, mingw-w64-common"))
        for name, srcs, extra in variants:
            for opt in ("-O0", "-O2", "-Os"):
                dst = work / f"mingw-{arch}-{name}{opt}.{'dll' if name == 'dll' else 'exe'}"
                item = compile_one(cc, srcs, [opt, "-Wl,--no-insert-timestamp", *extra], dst,
                                   strip)
                if item is not None:
                    inputs.append(BuildInput(item.path, lib_i, item.program, item.stripped))
    gcc = tool_version(f"{'x86_64-w64-mingw32'}-gcc").split()[-1]
    write(build_pack(f"mingw-w64-gcc{gcc.split('-')[0].split('.')[0]}-bookworm", libs, inputs,
                     exclude=OWN,
                     description=f"MinGW-w64 runtime functions (GCC {gcc}, Debian), i686 and "
                                 "x86_64: CRT start-up, printf family, libgcc, winpthreads"),
          out)


# Other Debian releases' MinGW-w64 runtimes (GCC 10 / mingw-w64 8 in bullseye, GCC 14 /
# mingw-w64 12 in trixie). Their compilers do not run on bookworm (trixie's needs glibc 2.38),
# and they need not: the runtime code in a program is the release's precompiled crt objects and
# libraries. The probes are compiled with bookworm's gcc against the release's headers and
# linked with bookworm's ld against the release's crt2.o/crtbegin.o/libmingw*/libgcc.
MINGW_RELEASES = ("bullseye", "trixie")
MINGW_DEBS = ("mingw-w64-common", "mingw-w64-x86-64-dev", "mingw-w64-i686-dev",
              "gcc-mingw-w64-x86-64-win32", "gcc-mingw-w64-i686-win32")
MINGW_LIBS = ("-lmingw32", "-lgcc", "-lgcc_eh", "-lmoldname", "-lmingwex", "-lmsvcrt",
              "-lkernel32", "-ladvapi32", "-lshell32", "-luser32", "-lkernel32", "-lmingw32",
              "-lgcc", "-lgcc_eh", "-lmoldname", "-lmingwex", "-lmsvcrt", "-lkernel32")


def fetch_release(release: str, work: Path) -> Path:
    """Download (never install) the release's MinGW-w64 packages with a private apt root that
    reads the machine's own Debian mirror, and unpack them; returns the unpacked tree."""
    root = work / f"apt-{release}"
    tree = work / f"tree-{release}"
    if tree.is_dir():
        return tree
    for d in ("etc", "cache/archives/partial", "state/lists/partial", "debs"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "state/status").write_text("")
    uri = "http://deb.debian.org/debian"
    for src in Path("/etc/apt/sources.list.d").glob("*.sources"):
        for line in src.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                uri = line.split()[1]
    key = "/usr/share/keyrings/debian-archive-keyring.gpg"
    line = f"deb [arch=amd64 signed-by={key}] {uri} {release} main\n"
    (root / "etc/sources.list").write_text(line)
    conf = root / "apt.conf"
    conf.write_text("\n".join(f'{k} "{v}";' for k, v in (
        ("Dir::State", root / "state"), ("Dir::State::status", root / "state/status"),
        ("Dir::Cache", root / "cache"), ("Dir::Etc::SourceList", root / "etc/sources.list"),
        ("Dir::Etc::SourceParts", root / "etc"), ("APT::Architecture", "amd64"),
        ("Acquire::Languages", "none"))) + "\n")
    run(["apt-get", "-c", str(conf), "-qq", "update"])
    debs = root / "debs"
    for pkg in MINGW_DEBS:
        subprocess.run(["apt-get", "-c", str(conf), "-qq", "-o", "APT::Sandbox::User=root",
                        "download", f"{pkg}:amd64/{release}"], cwd=debs, check=True,
                       capture_output=True, timeout=MAX_TOOL_SECONDS)
    tree.mkdir()
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg-deb", "-x", str(deb), str(tree)])
    return tree


def build_mingw_release(release: str, work: Path, out: Path) -> None:
    tree = fetch_release(release, work)
    libs, inputs = [], []
    variants = [("hello", "probe_hello.c", []), ("libc", "probe_libc.c", []),
                ("ansi", "probe_libc.c", ["-D__USE_MINGW_ANSI_STDIO=1"]),
                ("win", "probe_win.c", []),
                ("noinline", "probe_libc.c", ["-fno-inline", "-fno-ipa-cp", "-fno-ipa-sra"])]
    for lib_i, (triplet, arch, emu) in enumerate((("i686-w64-mingw32", "x86", "i386pe"),
                                                  ("x86_64-w64-mingw32", "x64", "i386pep"))):
        gcc_dir = next((tree / "usr/lib/gcc" / triplet).iterdir())
        sys_dir = tree / "usr" / triplet
        version = gcc_dir.name
        libs.append(LibraryInfo(
            "MinGW-w64 runtime (CRT, libgcc, winpthreads)", toolchain=f"{triplet} GCC {version}",
            version=f"{version} (Debian {release})", arch=arch, format="PE",
            source=f"Debian {release} packages " + ", ".join(MINGW_DEBS)))
        builtin_inc = run([f"{triplet}-gcc", "-print-file-name=include"]).strip()
        for name, src, extra in variants:
            for opt in ("-O0", "-O2", "-Os"):
                obj = work / f"{release}-{arch}-{name}{opt}.o"
                dst = obj.with_suffix(".exe")
                try:
                    # the -dev packages' headers are links into mingw-w64-common's tree
                    run([f"{triplet}-gcc", "-c", opt, *extra, "-nostdinc", "-isystem",
                         builtin_inc, "-isystem", str(tree / "usr/share/mingw-w64/include"),
                         "-isystem", str(sys_dir / "include"), str(PROBES / src),
                         "-o", str(obj)])
                    run([f"{triplet}-ld", "-m", emu, "-Bdynamic", "--no-insert-timestamp",
                         "-o", str(dst), str(sys_dir / "lib/crt2.o"),
                         str(gcc_dir / "crtbegin.o"), f"-L{gcc_dir}", f"-L{sys_dir / 'lib'}",
                         str(obj), *MINGW_LIBS, str(gcc_dir / "crtend.o")])
                    stripped = dst.with_name(dst.name + ".stripped")
                    shutil.copyfile(dst, stripped)
                    run([f"{triplet}-strip", "--strip-all", str(stripped)])
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                    log.warning("skipped %s: %s", dst.name, e)
                    continue
                inputs.append(BuildInput(dst, lib_i, dst.name, stripped))
    major = libs[-1].toolchain.split()[-1].split("-")[0].split(".")[0]
    write(build_pack(f"mingw-w64-gcc{major}-{release}", libs, inputs, exclude=OWN,
                     description=f"MinGW-w64 runtime functions of Debian {release} (GCC "
                                 f"{major}), i686 and x86_64"), out)


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
    ap.add_argument("--only", default="mingw,mingw-bullseye,mingw-trixie,elf,msvc")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="kinship-baseline-"))
    work.mkdir(parents=True, exist_ok=True)
    steps = {"mingw": build_mingw, "elf": build_elf, "msvc": build_msvc}
    for release in MINGW_RELEASES:
        steps[f"mingw-{release}"] = functools.partial(build_mingw_release, release)
    for name in args.only.split(","):
        d = work / name
        d.mkdir(exist_ok=True)
        steps[name](d, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
