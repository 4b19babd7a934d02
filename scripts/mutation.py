"""Mutation testing of the pure core with mutmut: does the suite notice deliberate breakages?

    python scripts/mutation.py                      # every module below
    python scripts/mutation.py metrics kmeans       # some of them
    python scripts/mutation.py --list               # the modules, their tests and function filters
    python scripts/mutation.py --issue-survivors    # re-apply issue 14's six survivors by hand

Slow (minutes per module) and CPU-heavy, so it is not part of CI. Each module is
mutated in its own throw-away copy of the repository (mutmut rewrites files in a
`mutants/` folder next to its config; the working tree is never touched) and
every mutant runs only the module's matching fast test files, on one thread, one
mutant at a time. Prints a table of killed / survived per module and writes

    bench/results/mutation.json   per module: counts, score, survivors (name + diff)
    bench/results/mutation.md     the same as a readable table (docs/mutation.md explains survivors)

Score = killed / (mutants that ran), where "killed" includes timeouts (a mutant
that hangs is caught too) and "ran" excludes mutants no selected test reaches
("no tests", listed separately: they are survivors in all but name).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AIM = 85.0  # percent of mutants killed, per module


@dataclass(frozen=True)
class Target:
    name: str
    path: str  # file to mutate, relative to the repository root
    tests: tuple[str, ...]  # the fast test files that exercise it
    functions: tuple[str, ...] = ()  # only mutants of these functions count (fnmatch on the mutant name); () = all
    note: str = ""


TARGETS = (
    Target("metrics", "hcl/metrics.py", ("tests/test_metrics.py",)),
    Target("kmeans", "hcl/kmeans.py", ("tests/test_kmeans.py",)),
    Target("cowa", "hcl/cowa.py", ("tests/test_cowa.py",)),
    Target("ccl", "hcl/ccl.py", ("tests/test_ccl.py", "tests/test_model.py")),
    Target("protocol", "realtime/core/protocol.py", ("tests/test_protocol_table.py",)),
    Target("windowing", "realtime/pipeline/windowing.py",
           ("tests/test_windowing.py", "tests/test_window_readiness.py", "tests/test_window_assembler.py",
            "tests/test_utterance_text.py", "tests/test_window_waits.py")),
    Target("web", "realtime/web/http.py", ("tests/test_http.py", "tests/test_access_tokens.py"),
           note="the server's pure HTTP layer: static files, ranges, content types, responses"),
    Target("access", "realtime/web/access.py", ("tests/test_http.py", "tests/test_access_tokens.py"),
           note="who the server answers: Access, is_loopback, split_host, token_of"),
    Target("component", "realtime/core/component.py", ("tests/test_component.py",)),
)

KILLED = {"killed", "timeout", "caught by type check", "segfault"}


@dataclass(frozen=True)
class HandMutation:
    """A breakage written by hand: replace `old` by `new` in `path`, then run `tests`."""

    claim: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


# The six mutations that survived the suite when issue 14 was filed.
ISSUE_SURVIVORS = (
    HandMutation("training returns the last epoch instead of the best valid epoch", "hcl/train.py",
                 "    if best_state is not None:\n        model.load_state_dict(best_state)",
                 "    if False:\n        model.load_state_dict(best_state)", ("tests/test_train.py",)),
    HandMutation("class7 truncates instead of rounding", "realtime/core/protocol.py",
                 "return int(max(-3, min(3, round(score))))", "return int(max(-3, min(3, int(score))))",
                 ("tests/test_protocol_table.py",)),
    HandMutation("the token check accepts any prefix of the token", "realtime/web/access.py",
                 "if not hmac.compare_digest(given.encode(), self.token.encode()):",
                 "if not self.token.startswith(given):", ("tests/test_access_tokens.py",)),
    HandMutation("the missing-camera error lists no camera indices", "realtime/sources/camera.py",
                 "describe_cameras(list_cameras())", "describe_cameras([])",
                 ("tests/test_cli.py::test_missing_camera_error_lists_the_cameras_that_exist",)),
    HandMutation("COWA without its x K factor (uniform weights no longer the identity)", "hcl/cowa.py",
                 "onehot, weights) * self.clusters", "onehot, weights)", ("tests/test_cowa.py",)),
    HandMutation("an empty K-means cluster's centroid set to zero", "hcl/kmeans.py",
                 "torch.where(self.nonempty, self.sums, self.centroids, out=self.centroids)",
                 "torch.where(self.nonempty, self.sums, torch.zeros_like(self.centroids), out=self.centroids)",
                 ("tests/test_kmeans.py",)),
)


def run_hand_mutations(base: Path) -> list[dict]:
    """Each mutation in its own copy of the repository; caught = its tests fail."""
    out = []
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for i, m in enumerate(ISSUE_SURVIVORS):
        work = base / f"hand{i}"
        if work.exists():
            shutil.rmtree(work)
        for folder in ("hcl", "realtime", "client", "tests", "models"):
            shutil.copytree(ROOT / folder, work / folder, ignore=ignore)
        shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")
        target = work / m.path
        text = target.read_text()
        row = {"claim": m.claim, "file": m.path, "tests": list(m.tests)}
        if text.count(m.old) != 1:
            row.update(caught=None, detail=f"the original text was not found once in {m.path}: update the mutation")
            out.append(row)
            continue
        target.write_text(text.replace(m.old, m.new))
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(work), PYTHONDONTWRITEBYTECODE="1")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *m.tests],
                              cwd=work, env=env, capture_output=True, text=True)
        failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
        row.update(caught=proc.returncode == 1, returncode=proc.returncode, seconds=round(time.perf_counter() - t0, 1),
                   detail=failed[0] if failed else proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "")
        out.append(row)
        print(f"  {'CAUGHT ' if row['caught'] else 'MISSED '} {m.claim}: {row['detail']}", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    return out


def _copy_tree(dst: Path, target: Target) -> None:
    """The packages, dashboard files and the target's tests (plus test helpers) into dst."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("hcl", "realtime", "client"):
        shutil.copytree(ROOT / folder, dst / folder, ignore=ignore)
    (dst / "tests").mkdir()
    for helper in ("conftest.py", "media_fixtures.py"):
        shutil.copy2(ROOT / "tests" / helper, dst / "tests" / helper)
    for test in target.tests:
        if (ROOT / test).is_file():
            shutil.copy2(ROOT / test, dst / test)
    # pytest settings (markers) without the packaging sections mutmut would read
    (dst / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: end-to-end tests\n")
    tests = [t for t in target.tests if (ROOT / t).is_file()]
    lines = [
        "[mutmut]",
        "source_paths =\n    hcl\n    realtime",
        f"only_mutate =\n    {target.path}",
        "also_copy =\n    client",
        "pytest_add_cli_args_test_selection =\n" + "".join(f"    {t}\n" for t in tests).rstrip("\n"),
        "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -q",
        # torch does not survive a plain fork of a process that already ran it
        "process_isolation = forkserver",
        "use_git_change_detection = false",
    ]
    (dst / "setup.cfg").write_text("\n".join(lines) + "\n")


def _mutmut(workdir: Path, args: list[str], *, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )


def _statuses(workdir: Path, target: Target) -> dict[str, str]:
    from mutmut.stats import status_by_exit_code

    meta = workdir / "mutants" / (target.path + ".meta")
    if not meta.is_file():
        return {}
    data = json.loads(meta.read_text())
    out = {}
    for name, code in data.get("exit_code_by_key", {}).items():
        if target.functions and not any(fnmatch.fnmatch(name, f) for f in target.functions):
            continue
        out[name] = status_by_exit_code[code]
    return out


def run_target(target: Target, *, base: Path, timeout: float, keep: bool) -> dict:
    workdir = base / target.name
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    _copy_tree(workdir, target)
    t0 = time.perf_counter()
    filters = list(target.functions)
    try:
        proc = _mutmut(workdir, ["run", "--max-children", "1", *filters], timeout=timeout)
        returncode, log_tail = proc.returncode, (proc.stdout[-3000:] + "\n" + proc.stderr[-3000:]).strip()
    except subprocess.TimeoutExpired:  # partial: the mutants that ran count, the rest are "not checked"
        returncode, log_tail = None, f"mutmut stopped after --timeout {timeout:.0f} s"
    result = collect(target, workdir, seconds=time.perf_counter() - t0)
    result["mutmut_returncode"] = returncode
    if not result["mutants"] or returncode is None:
        result["error"] = log_tail
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def recheck(target: Target, workdir: Path, *, timeout: float) -> dict:
    """Run the survivors of a kept folder again against the module's current test files
    (tests that were only added to: a mutant they killed stays killed), then collect."""
    if not (workdir / "mutants").is_dir():
        raise SystemExit(f"{workdir} holds no mutmut results: run the module with --keep first")
    for test in target.tests:
        if (ROOT / test).is_file():
            for dst in (workdir / test, workdir / "mutants" / test):
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / test, dst)
    survivors = sorted(n for n, s in _statuses(workdir, target).items() if s == "survived")
    t0 = time.perf_counter()
    if survivors:
        try:
            _mutmut(workdir, ["run", "--max-children", "1", *survivors], timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"  the recheck stopped after --timeout {timeout:.0f} s", file=sys.stderr)
    result = collect(target, workdir)
    result["rechecked"] = {"survivors": len(survivors), "seconds": round(time.perf_counter() - t0, 1)}
    return result


def collect(target: Target, workdir: Path, *, seconds: float | None = None) -> dict:
    """Counts, score and survivors (with diffs) of a mutmut folder, finished or not."""
    statuses = _statuses(workdir, target)
    counts: dict[str, int] = {}
    for s in statuses.values():
        counts[s] = counts.get(s, 0) + 1
    killed = sum(n for s, n in counts.items() if s in KILLED)
    survived_names = sorted(n for n, s in statuses.items() if s == "survived")
    no_tests = sorted(n for n, s in statuses.items() if s == "no tests")
    ran = killed + len(survived_names)
    survivors = []
    for name in survived_names:
        diff = _mutmut(workdir, ["show", name], timeout=120).stdout
        survivors.append({"name": name, "status": statuses[name], "diff": diff.strip()})
    survivors += [{"name": name, "status": "no tests", "diff": ""} for name in no_tests]
    if seconds is None:  # collected afterwards: the time from the folder's creation to its last result
        meta = workdir / "mutants" / (target.path + ".meta")
        seconds = meta.stat().st_mtime - (workdir / "setup.cfg").stat().st_mtime if meta.is_file() else 0.0
    return {
        "module": target.path,
        "tests": list(target.tests),
        "functions": list(target.functions),
        "note": target.note,
        "mutants": len(statuses),
        "killed": killed,
        "survived": len(survived_names),
        "no_tests": len(no_tests),
        "not_checked": counts.get("not checked", 0),
        "other": {s: n for s, n in counts.items() if s not in KILLED | {"survived", "no tests", "not checked"}},
        "score": round(100.0 * killed / ran, 1) if ran else None,
        "seconds": round(seconds, 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "survivors": survivors,
    }


def table(results: list[dict]) -> str:
    head = "| module | mutants | killed | survived | no tests | not checked | score | aim | time |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in results:
        score = "n/a" if r["score"] is None else f"{r['score']:.1f} %"
        partial = r.get("not_checked", 0)
        ok = "met" if r["score"] is not None and r["score"] >= AIM and not r["no_tests"] else "NOT met"
        if partial:
            ok += " (partial run)"
        lines.append(
            f"| {r['module']}{' (access checks)' if r['functions'] else ''} | {r['mutants']} | {r['killed']} | "
            f"{r['survived']} | {r['no_tests']} | {partial} | {score} | {ok} | {r['seconds']:.0f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("modules", nargs="*", help=f"some of {[t.name for t in TARGETS]} (default: all)")
    p.add_argument("--list", action="store_true", help="list the modules and exit")
    p.add_argument("--issue-survivors", action="store_true",
                   help="re-apply the six survivors of issue 14 by hand and check the suite catches each")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per module (default 3600)")
    p.add_argument("--workdir", default=None, help="where the throw-away copies go (default: a temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the copies (to inspect with `mutmut show` there)")
    p.add_argument("--recheck", action="store_true",
                   help="re-run only the survivors of an earlier --keep run under --workdir against the current tests")
    p.add_argument("--collect", action="store_true",
                   help="run nothing: read the results of earlier --keep runs under --workdir (finished or still running)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "mutation.json"))
    args = p.parse_args(argv)
    by_name = {t.name: t for t in TARGETS}
    if args.list:
        for t in TARGETS:
            print(f"{t.name:14s} {t.path:24s} tests: {', '.join(t.tests)}" + (f"  [{t.note}]" if t.note else ""))
        return 0
    if args.issue_survivors:
        base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="hcl-mutation-"))
        rows = run_hand_mutations(base)
        out = Path(args.out).with_name("mutation_issue_survivors.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=2))
        print(f"wrote {out}")
        return 0 if all(r["caught"] for r in rows) else 1
    unknown = [m for m in args.modules if m not in by_name]
    if unknown:
        p.error(f"unknown module(s) {unknown}; choose from {sorted(by_name)}")
    chosen = [by_name[m] for m in args.modules] if args.modules else list(TARGETS)
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="hcl-mutation-"))
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    listed = {t.path for t in TARGETS}
    merged = {r["module"] + ("#" + ",".join(r["functions"]) if r["functions"] else ""): r
              for r in previous.get("results", []) if r["module"] in listed and not r["functions"]}
    results = []
    for target in chosen:
        print(f"mutating {target.path} against {', '.join(target.tests)} ...", flush=True)
        if args.collect:
            r = collect(target, base / target.name)
        elif args.recheck:
            r = recheck(target, base / target.name, timeout=args.timeout)
        else:
            r = run_target(target, base=base, timeout=args.timeout, keep=args.keep)
        if "error" in r:
            print(f"  mutmut found no results:\n{r['error']}", file=sys.stderr)
        print(f"  {r['killed']} killed, {r['survived']} survived, {r['no_tests']} without tests; "
              f"score {r['score']} % in {r['seconds']:.0f} s", flush=True)
        results.append(r)
        merged[r["module"] + ("#" + ",".join(r["functions"]) if r["functions"] else "")] = r
        write_results(Path(args.out), list(merged.values()))
    print()
    print(table(results))
    out = Path(args.out)
    print(f"\nwrote {out} and {out.with_suffix('.md')}")
    missed = [r["module"] for r in results if r["score"] is None or r["score"] < AIM or r.get("not_checked")]
    return 1 if missed else 0


def write_results(out: Path, all_results: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    import mutmut

    payload = {
        "tool": f"mutmut {getattr(mutmut, '__version__', '?')}",
        "python": platform.python_version(),
        "aim_percent": AIM,
        "results": all_results,
    }
    out.write_text(json.dumps(payload, indent=2))
    md = ["# Mutation testing (scripts/mutation.py)", "", table(all_results), ""]
    for r in all_results:
        if r["survivors"]:
            md += [f"## {r['module']}: survivors", ""]
            for s in r["survivors"]:
                md += [f"### {s['name']} ({s['status']})", "", "```diff", s["diff"], "```", ""]
    out.with_suffix(".md").write_text("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
