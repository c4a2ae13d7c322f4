"""Mutation testing of the decision core with mutmut, one module at a time (docs/mutation.md).

Run through `scripts/mutation`, which installs the pinned mutmut first. Each module is mutated in
a throw-away copy of the working tree (edits not yet committed included), with only the test
files scope.toml names for it, so the worktree is never touched and a run can go on while you edit.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PACKAGES = ["terminal", "drivers", "sim"]
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


@dataclass
class Mutant:
    key: str
    status: str
    function: str
    line: int
    before: str
    after: str
    equivalent: str | None = None  # the reason, when equivalent.toml lists it


def squash(lines: list[str]) -> str:
    return " ".join(" ".join(line.split()) for line in lines)


def functions(tree: ast.AST, prefix: str = "") -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Module-level functions and methods by qualified name ("decide", "Store.ack")."""
    out = {}
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[prefix + node.name] = node
        elif isinstance(node, ast.ClassDef):
            out.update(functions(node, prefix + node.name + "."))
    return out


def all_defs(tree: ast.AST) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def mangled(qualname: str) -> str:
    """mutmut's name for a function: x_decide, xǁStoreǁack."""
    parts = qualname.split(".")
    return "x_" + parts[0] if len(parts) == 1 else "x" + "".join("ǁ" + p for p in parts)


def unmangle(name: str) -> str:
    return name[2:] if name.startswith("x_") else ".".join(name.split("ǁ")[1:])


def span(node: ast.AST) -> tuple[int, int]:
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return first, node.end_lineno


def lines_of(src: list[str], node: ast.AST) -> list[str]:
    return src[node.lineno - 1:node.end_lineno]


def read_mutants(work: Path, rel: str, statuses) -> list[Mutant]:
    """Every mutant of ``rel`` with its status and the original line(s) it changes."""
    meta = json.loads((work / "mutants" / (rel + ".meta")).read_text())
    mutated_src = (work / "mutants" / rel).read_text().splitlines()
    mdefs = all_defs(ast.parse("\n".join(mutated_src)))
    orig_src = (ROOT / rel).read_text().splitlines()
    odefs = functions(ast.parse("\n".join(orig_src)))
    dotted = rel[:-3].replace("/", ".") + "."
    out = []
    for key, code in meta["exit_code_by_key"].items():
        name = key[len(dotted):]
        base = name.rsplit("__mutmut_", 1)[0]
        qual = unmangle(base)
        orig_node, mut_node = mdefs[base + "__mutmut_orig"], mdefs[name]
        plain = qual.rsplit(".", 1)[-1]
        a = [line.replace(base + "__mutmut_orig", plain, 1) for line in lines_of(mutated_src, orig_node)]
        b = [line.replace(name, plain, 1) for line in lines_of(mutated_src, mut_node)]
        before, after, first = [], [], None
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
            if op != "equal":
                first = i1 if first is None else first
                before += a[i1:i2]
                after += b[j1:j2]
        line = 0
        if first is not None and qual in odefs:
            # The copy keeps the function's text, so its offset in the function is its offset here.
            line = odefs[qual].lineno + min(first, len(a) - 1)
        out.append(Mutant(key, statuses[code], qual, line, squash(before), squash(after)))
    return out


def selected(mutants: list[Mutant], rel: str, select: list[dict]) -> list[Mutant]:
    if not select:
        return mutants
    src = (ROOT / rel).read_text()
    defs, text = functions(ast.parse(src)), src.splitlines()
    ranges = []
    for s in select:
        if s["function"] not in defs:
            sys.exit(f"mutation: scope.toml selects {s['function']} but {rel} has no such function")
        ranges.append((*span(defs[s["function"]]), re.compile(s.get("lines", ""))))
    return [m for m in mutants
            if any(lo <= m.line <= hi and rx.search(text[m.line - 1]) for lo, hi, rx in ranges)]


def run_module(name: str, scope: dict, equivalents: list[dict], keep: bool) -> dict:
    rel, tests, select = scope["file"], scope["tests"], scope.get("select", [])
    work = Path(tempfile.mkdtemp(prefix=f"mutation-{name}-"))
    started = time.monotonic()
    try:
        # The files git would see (tracked or new, not ignored): tests read README, configs, units.
        listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, check=True).stdout.decode().split("\0")
        for f in filter(None, listed):
            if (ROOT / f).is_file():
                (work / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, work / f)
        others = sorted({f.split("/")[0] for f in listed if f} - set(PACKAGES))
        (work / "setup.cfg").write_text(
            "[mutmut]\nsource_paths=\n" + "".join(f"    {p}\n" for p in PACKAGES)
            + "also_copy=\n" + "".join(f"    {p}\n" for p in others)
            + f"only_mutate={rel}\n"
            "pytest_add_cli_args_test_selection=\n" + "".join(f"    {t}\n" for t in tests)
            + "pytest_add_cli_args=\n    -p\n    no:cacheprovider\n")
        # Only the selected functions' mutants are run: the rest of the file cannot count.
        dotted = rel[:-3].replace("/", ".")
        patterns = sorted({f"{dotted}.{mangled(s['function'])}__mutmut_*" for s in select})
        log = work / "mutmut.log"
        with log.open("w") as out:
            rc = subprocess.run([str(Path(sys.executable).parent / "mutmut"), "run", "--max-children",
                                 str(os.cpu_count() or 2), *patterns],
                                cwd=work, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}).returncode
        meta = work / "mutants" / (rel + ".meta")
        if rc != 0 or not meta.exists():
            tail = log.read_text(errors="replace")[-3000:]
            return {"module": name, "error": f"mutmut exited {rc} (log: {log})\n{tail}"}
        from mutmut.stats import status_by_exit_code
        mutants = selected(read_mutants(work, rel, status_by_exit_code), rel, select)
        if select:  # mutants of unselected functions were never run
            mutants = [m for m in mutants if m.status != "not checked"]
        used = set()
        for m in mutants:
            for i, e in enumerate(equivalents):
                if (e["module"], e["function"], e["before"], e["after"]) == (name, m.function, m.before, m.after):
                    m.equivalent = e["reason"]
                    used.add(i)
        stale = [e for i, e in enumerate(equivalents) if e["module"] == name and i not in used]
        equivalent = [m for m in mutants if m.equivalent is not None]
        killed = [m for m in mutants if m.equivalent is None and m.status in KILLED]
        survived = [m for m in mutants if m.equivalent is None and m.status not in KILLED]
        counted = len(killed) + len(survived)
        return {"module": name, "file": rel, "seconds": round(time.monotonic() - started, 1),
                "tried": len(mutants), "killed": len(killed), "survived": len(survived),
                "equivalent": len(equivalent), "score": round(100 * len(killed) / counted, 1) if counted else None,
                "survivors": [asdict(m) for m in sorted(survived, key=lambda m: (m.line, m.key))],
                "stale_equivalents": stale}
    finally:
        if keep:
            print(f"mutation: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def show(r: dict) -> None:
    if "error" in r:
        print(f"\n== {r['module']}: FAILED — {r['error']}")
        return
    score = "n/a" if r["score"] is None else f"{r['score']}%"
    print(f"\n== {r['module']} ({r['file']}, {r['seconds']}s): tried {r['tried']}, killed {r['killed']}, "
          f"survived {r['survived']}, equivalent {r['equivalent']}, score {score}")
    for m in r["survivors"]:
        why = "" if m["status"] == "survived" else f"  [{m['status']}]"
        print(f"  {r['file']}:{m['line']} {m['function']}{why}  ({m['key'].rsplit('.', 1)[1]})\n"
              f"      - {m['before']}\n      + {m['after']}")
    for e in r["stale_equivalents"]:
        print(f"  stale equivalent.toml entry (matches no mutant): {e['function']}: {e['before']} → {e['after']}")


def main() -> int:
    # A terminated run still removes its temporary copies (the finally in run_module).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scope = tomllib.loads((HERE / "scope.toml").read_text())
    p = argparse.ArgumentParser(prog="scripts/mutation", description=__doc__.splitlines()[0])
    p.add_argument("modules", nargs="*", metavar="MODULE", help=f"default: all of {', '.join(scope)}")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary copies (to inspect mutmut's state)")
    args = p.parse_args()
    unknown = [m for m in args.modules if m not in scope]
    if unknown:
        p.error(f"unknown module {', '.join(unknown)} (known: {', '.join(scope)})")
    equivalents = tomllib.loads((HERE / "equivalent.toml").read_text()).get("mutant", [])
    started, results = time.monotonic(), []
    for name in args.modules or list(scope):
        print(f"\n.. {name}: mutating {scope[name]['file']} against {len(scope[name]['tests'])} test set(s)", flush=True)
        results.append(run_module(name, scope[name], equivalents, args.keep))
        show(results[-1])
    print(f"\n{'module':16} {'tried':>6} {'killed':>7} {'survived':>9} {'equiv':>6} {'score':>7} {'time':>7}")
    for r in results:
        if "error" in r:
            print(f"{r['module']:16} failed")
            continue
        score = "n/a" if r["score"] is None else f"{r['score']}%"
        print(f"{r['module']:16} {r['tried']:>6} {r['killed']:>7} {r['survived']:>9} {r['equivalent']:>6} "
              f"{score:>7} {r['seconds']:>6}s")
    print(f"total time {time.monotonic() - started:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
