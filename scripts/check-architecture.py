#!/usr/bin/env python3
"""Checks the architecture that CONTRIBUTING.md describes.

1. No import cycles between the modules of a workspace crate. An edge A -> B means a file of module A names `crate::B...` or
`super::...` resolving to B, where neither module contains the other (a
parent using its children, or a child its parent's items, is how Rust
modules nest, not a cycle).
2. No I/O crate under the pure ones: `cargo tree` of each pure crate's normal
   dependencies holds no async runtime, HTTP, TLS or kokon I/O crate.

Exits 1 if either fails.
"""
import pathlib, re, subprocess, sys, tomllib

PURE = ["kokon-bytes", "kokon-attestation", "kokon-policies", "kokon-billing", "kokon-ton", "kokon-seal", "kokon-measure"]
IO = ["tokio", "hyper", "hyper-util", "rustls", "mio", "kokon-fetch", "kokon-host",
      "kokon-enclave", "kokon-client", "kokon-wire", "kokon-ton-api", "kokon-ton-sandbox"]

root = pathlib.Path(__file__).resolve().parent.parent
members = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["members"]


def module_of(src, path):
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def resolve(modules, path):
    """The longest module that is a prefix of `path`."""
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in modules:
            return tuple(path[:n])
    return ()


def code_of(text):
    """The file without its unit tests and comments (doc links are not imports)."""
    i = text.find("#[cfg(test)]\nmod tests")
    text = text if i < 0 else text[:i]
    return re.sub(r"//[^\n]*", "", text)


failed = False
for member in members:
    src = root / member / "src"
    if not src.is_dir():
        continue
    files = [p for p in src.rglob("*.rs") if "bin" not in p.relative_to(src).parts]
    modules = {module_of(src, p) for p in files}
    edges = {}
    for p in files:
        m = module_of(src, p)
        is_mod_file = p.stem in ("mod", "lib", "main")
        text = code_of(p.read_text())
        for ref in re.finditer(r"\b(crate|super)((?:::\w+)+)", text):
            path = ref.group(2).split("::")[1:]
            if ref.group(1) == "super":
                base = list(m if is_mod_file else m)[:-1]
                while path and path[0] == "super":
                    base, path = base[:-1], path[1:]
                path = base + path
            target = resolve(modules, path)
            if target[: len(m)] == m or m[: len(target)] == target:
                continue
            edges.setdefault(m, set()).add(target)
    # Find cycles with a depth-first search.
    state, stack = {}, []

    def visit(n):
        global failed
        state[n] = 1
        stack.append(n)
        for t in sorted(edges.get(n, ())):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                print(f"{member}: cycle " + " -> ".join("::".join(c) or "crate" for c in cycle))
                failed = True
            elif t not in state:
                visit(t)
        stack.pop()
        state[n] = 2

    for n in sorted(modules):
        if n not in state:
            visit(n)
print("module cycles: " + ("found" if failed else "none"))

impure = False
for crate in PURE:
    tree = subprocess.run(
        ["cargo", "tree", "--offline", "-q", "-p", crate, "-e", "normal", "--prefix", "none"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout
    names = {line.split()[0] for line in tree.splitlines() if line.strip()}
    found = sorted(names & set(IO))
    if found:
        print(f"{crate} is pure but depends on {', '.join(found)}")
        impure = True
print("pure crates: " + ("I/O found" if impure else f"no I/O crate under {', '.join(PURE)}"))
sys.exit(1 if failed or impure else 0)
