"""The kernels' build cache cannot hang or crash later processes: the build lock dies with its
holder, a waiting process gives up after a bounded time, a corrupt library is rebuilt, not loaded."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mgiad.kernels import build

ROOT_ENV = {k: v for k, v in os.environ.items() if not k.startswith("MGIAD_KERNELS")}


def _holder(lock, seconds=60):
    """A process that takes the build lock and keeps it."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from mgiad.kernels import build
        with build.exclusive(Path({str(lock)!r})):
            print("held", flush=True)
            time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=ROOT_ENV)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_killed_holder_never_blocks_the_next_build(tmp_path):
    lock = tmp_path / "x.lock"
    proc = _holder(lock)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock.exists()  # what it leaves behind ...
    t = time.monotonic()
    with build.exclusive(lock, timeout=10):  # ... does not hold anyone up
        pass
    assert time.monotonic() - t < 5


def test_a_waiting_process_says_why_and_gives_up(tmp_path, capsys):
    lock = tmp_path / "x.lock"
    proc = _holder(lock)
    try:
        with pytest.raises(build.BuildLockTimeout, match="gave up after 1 s waiting"):
            with build.exclusive(lock, timeout=1):
                pytest.fail("the lock was held by another process")
        assert capsys.readouterr().err.count("waiting for another process") == 1
    finally:
        proc.kill()
        proc.wait()


def _cache_with(tmp_path):
    """A kernel cache folder in tmp_path named as the real one is (same hash)."""
    real = build.build_directory()
    if build.missing_tool() is not None or not build.verified(real):
        pytest.skip("the kernels are not built here")
    return real, tmp_path / real.name


def test_load_falls_back_with_a_message_when_the_builder_never_finishes(tmp_path):
    real, folder = _cache_with(tmp_path)
    proc = _holder(tmp_path / f"{folder.name}.lock")
    try:
        out = subprocess.run(
            [sys.executable, "-W", "always", "-c",
             "from mgiad.kernels import build; print(build.load())"],
            capture_output=True, text=True, timeout=120,
            env={**ROOT_ENV, "MGIAD_KERNELS_CACHE": str(tmp_path), "MGIAD_KERNELS_BUILD_TIMEOUT": "1"})
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
    assert "waiting for another process" in out.stderr
    assert "gave up after 1 s" in out.stderr and "using PyTorch's convolutions" in out.stderr


@pytest.mark.parametrize("damage", ["truncated", "no record"])
def test_a_damaged_library_is_rebuilt_not_loaded(tmp_path, damage):
    real, folder = _cache_with(tmp_path)
    shutil.copytree(real, folder)
    library = folder / build.LIBRARY
    if damage == "truncated":
        library.write_bytes(library.read_bytes()[: library.stat().st_size // 2])
    else:
        (folder / "manifest.json").unlink()
    assert not build.verified(folder)
    # the rebuild is a copy of the good library, so that the test takes seconds, not a minute
    code = textwrap.dedent(f"""
        import shutil
        from pathlib import Path
        from mgiad.kernels import build
        build._compile = lambda d: shutil.copy({str(real / build.LIBRARY)!r}, Path(d) / build.LIBRARY)
        print(build.load())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**ROOT_ENV, "MGIAD_KERNELS_CACHE": str(tmp_path)})
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr  # no bus error
    assert "building it again" in out.stderr
    assert build.verified(folder)
    assert json.loads((folder / "manifest.json").read_text())["size"] == (real / build.LIBRARY).stat().st_size
    assert not [p for p in tmp_path.iterdir() if ".build-" in p.name or ".stale-" in p.name]


def test_a_build_killed_halfway_leaves_nothing_that_hangs_the_next(tmp_path):
    """A first build killed mid-way (Ctrl-C, timeout, OOM): the next process builds and loads
    within its timeout, never waits on what the dead one left."""
    real, folder = _cache_with(tmp_path)
    env = {**ROOT_ENV, "MGIAD_KERNELS_CACHE": str(tmp_path)}
    slow = textwrap.dedent("""
        import time
        from pathlib import Path
        from mgiad.kernels import build
        def compile_forever(d):
            (Path(d) / build.LIBRARY).write_bytes(b"half a library")
            (Path(d) / "lock").write_text("")  # what torch's own build baton leaves
            print("building", flush=True)
            time.sleep(600)
        build._compile = compile_forever
        build.load()
    """)
    first = subprocess.Popen([sys.executable, "-c", slow], stdout=subprocess.PIPE, text=True, env=env)
    assert first.stdout.readline().strip() == "building"
    first.send_signal(signal.SIGKILL)
    first.wait()
    quick = textwrap.dedent(f"""
        import shutil
        from pathlib import Path
        from mgiad.kernels import build
        build._compile = lambda d: shutil.copy({str(real / build.LIBRARY)!r}, Path(d) / build.LIBRARY)
        print(build.load())
    """)
    out = subprocess.run([sys.executable, "-c", quick], capture_output=True, text=True, timeout=60,
                         env=env)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr
    assert "waiting" not in out.stderr
    assert build.verified(folder)


def test_a_verified_build_loads_without_compiler_or_write_access(tmp_path):
    real, folder = _cache_with(tmp_path)
    shutil.copytree(real, folder)
    tmp_path.chmod(0o555)
    folder.chmod(0o555)
    try:
        out = subprocess.run(
            [sys.executable, "-W", "error", "-c",
             "from mgiad.kernels import build\n"
             "build.missing_tool = lambda: 'no C++ compiler (c++) found'\n"
             "print(build.load())"],
            capture_output=True, text=True, timeout=60,
            env={**ROOT_ENV, "MGIAD_KERNELS_CACHE": str(tmp_path)})
    finally:
        folder.chmod(0o755)
        tmp_path.chmod(0o755)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr


@pytest.mark.parametrize("value, on", [("0", False), ("false", False), ("OFF", False), ("no", False),
                                       ("1", True), ("yes", True), ("", True)])
def test_kernels_switch_reads_the_usual_spellings(monkeypatch, value, on):
    from mgiad.kernels import runtime
    monkeypatch.setenv("MGIAD_KERNELS", value)
    assert runtime.enabled() is on
    if not on:
        assert runtime.isa() == 0 and not runtime.available()


def test_misspelt_settings_warn(monkeypatch):
    from mgiad.kernels import runtime
    runtime._warn_once.cache_clear()
    monkeypatch.setenv("MGIAD_KERNELS", "maybe")
    with pytest.warns(RuntimeWarning, match="MGIAD_KERNELS='maybe'"):
        assert runtime.enabled()
    monkeypatch.delenv("MGIAD_KERNELS")
    monkeypatch.setenv("MGIAD_KERNELS_ISA", "sse2")
    with pytest.warns(RuntimeWarning, match="MGIAD_KERNELS_ISA='sse2'"):
        runtime.isa()


def test_the_fallback_warning_is_one_line(tmp_path):
    """No compiler and an empty cache: stderr holds the warning and nothing else, on one line
    (``warnings.warn`` would print the calling script's source line under it)."""
    script = tmp_path / "script.py"
    script.write_text("from mgiad import kernels\nprint(kernels.available())\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         env={**ROOT_ENV, "CXX": "no-such-c++-compiler",
                              "MGIAD_KERNELS_CACHE": str(tmp_path)})
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "no C++ compiler" in lines[0], out.stderr
    assert "using PyTorch's convolutions" in lines[0]


def test_two_checkouts_with_identical_sources_share_one_build(tmp_path):
    """The cache folder is named after the sources' contents, not their paths: a second checkout
    loads the first one's build (here no compiler is found, so a rebuild would fall back)."""
    real, folder = _cache_with(tmp_path / "cache")
    shutil.copytree(real, folder)
    package = os.path.dirname(os.path.dirname(build.__file__))
    ignore = shutil.ignore_patterns("__pycache__", "*.safetensors")
    for checkout in ("a", "b"):
        shutil.copytree(package, tmp_path / checkout / "mgiad", ignore=ignore)
        out = subprocess.run(
            [sys.executable, "-c", "from mgiad.kernels import build; print(build.__file__, build.load())"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={**ROOT_ENV, "PYTHONPATH": str(tmp_path / checkout), "CXX": "no-such-c++-compiler",
                 "MGIAD_KERNELS_CACHE": str(tmp_path / "cache")})
        where, loaded = out.stdout.split()
        assert where.startswith(str(tmp_path / checkout)) and loaded == "True", out.stderr
        assert "building" not in out.stderr and "warning" not in out.stderr.lower()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [folder.name]
