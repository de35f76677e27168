#!/usr/bin/env python3
"""Checks the crate's import graph: no cycle between files, no import that runs up a layer.

Reads every `use crate::…`, `use super::…` and inline `crate::…`/`super::…` path in src/
(test code left out: `#[cfg(test)]` items and files named tests.rs) and resolves each to the
file that defines the module, following a module's own `pub use` of a child's item to that
child. A module may use its own submodules (it is made of them): those arrows are not counted;
every other arrow is, between siblings and towards parents alike.

Rules (docs/architecture.md, "Rooms and layers"):
  1. the file graph has no cycle;
  2. a room (a top-level module) never imports a room of a higher layer;
  3. two rooms never import each other.
Exits 1 and prints each violation with the line that makes it; 0 with a one-line summary.
Standard library only, so `make test` needs nothing installed for it.
"""
import os
import re
import sys

# Highest first. Leaves (clock, exit_code, http_client, quality, shutdown, telemetry) import no room and
# may be imported by any.
LAYERS = [
    ["main", "commands", "cli"],
    ["dash", "server", "export", "plan", "traffic"],
    ["notify", "alerts", "protocol", "discovery"],
    ["engine", "config"],
    ["drift", "stats"],
    ["clock", "exit_code", "http_client", "quality", "shutdown", "telemetry"],
]
LAYER_OF = {room: depth for depth, rooms in enumerate(LAYERS) for room in rooms}

COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
STRING = re.compile(r'r(#*)".*?"\1|b?"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])\'', re.S)
USE = re.compile(r"\buse\s+([^;]+);")
INLINE = re.compile(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)")


def strip(text):
    """Code without comments, strings and test-only items (newlines kept for line numbers)."""
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))
    text = STRING.sub(blank, COMMENT.sub(blank, text))
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        j = m.end()
        while j < len(text) and text[j] not in "{;":
            j += 1
        if j < len(text) and text[j] == "{":
            depth = 0
            while j < len(text):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
                if depth == 0:
                    break
        else:
            j += 1
        out.append(re.sub(r"[^\n]", " ", text[m.start():j]))
        i = j
    out.append(text[i:])
    return "".join(out)


def expand(tree):
    """`a::{b, c::{d, e}}` → ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)
    if "{" not in tree:
        return [tree]
    head, body = tree[: tree.index("{")], tree[tree.index("{") + 1 : tree.rindex("}")]
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(body + ","):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            if body[start:k]:
                parts.append(body[start:k])
            start = k + 1
    return [path for part in parts for path in expand(head + part)]


def module_of(rel):
    """src/a/b.rs → ('a', 'b'); src/a/mod.rs → ('a',); src/lib.rs and src/main.rs → ()."""
    parts = rel[len("src/") : -len(".rs")].split("/")
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def main(root):
    files = {}
    for folder, _, names in os.walk(os.path.join(root, "src")):
        for name in names:
            if name.endswith(".rs") and name != "tests.rs":
                rel = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
                files[rel] = strip(open(os.path.join(root, rel), encoding="utf-8").read())
    file_of = {module_of(rel): rel for rel in files if not rel.endswith("main.rs")}
    # Files that only `#[cfg(test)] mod NAME;` loads are test code too.
    for rel in list(files):
        raw = open(os.path.join(root, rel), encoding="utf-8").read()
        for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", raw):
            child = file_of.pop(module_of(rel) + (m.group(1),), None)
            files.pop(child, None)

    def resolve(path, here):
        """(file, item) a path names, or None for another crate or a child of `here`."""
        segs = path.split("::")
        if segs[0] == "crate" or segs[0] == "capwatch":
            base, segs = (), segs[1:]
        elif segs[0] in ("super", "self"):
            base = here
            while segs and segs[0] in ("super", "self"):
                base = base[:-1] if segs[0] == "super" else base
                segs = segs[1:]
        else:
            return None
        depth = len(base)
        while depth < len(base) + len(segs) and base + tuple(segs[: depth - len(base) + 1]) in file_of:
            depth += 1
        module = (base + tuple(segs))[:depth]
        item = (base + tuple(segs))[depth] if depth < len(base) + len(segs) else None
        return file_of.get(module), item

    # A module's own bindings of a child's items (`pub use child::Item`), to look through.
    rebinds = {}
    for rel, code in files.items():
        here = module_of(rel)
        for m in USE.finditer(code):
            for path in expand(m.group(1)):
                segs = path.split("::")
                if (here + (segs[0],)) in file_of and segs[0] not in ("crate", "super", "self"):
                    name = segs[-1].split("as")[-1]
                    target = resolve("self::" + path, here)
                    if target and target[0]:
                        rebinds[(rel, name)] = target[0]

    edges = {}
    for rel, code in files.items():
        here = module_of(rel)
        refs = [(m.start(), p) for m in USE.finditer(code) for p in expand(m.group(1))]
        refs += [(m.start(), m.group(1)) for m in INLINE.finditer(code)]
        if rel.endswith("main.rs"):
            refs += [(m.start(), "capwatch::" + m.group(1)) for m in re.finditer(r"(?<![\w:])capwatch::([\w:]+)", code)]
        for offset, path in refs:
            target = resolve(path, here)
            if not target or not target[0]:
                continue
            dest, item = target
            while (dest, item) in rebinds and rebinds[(dest, item)] != dest:
                dest = rebinds[(dest, item)]
            owned = module_of(dest)[: len(here)] == here and not rel.endswith("main.rs")
            if dest != rel and not owned:
                edges.setdefault((rel, dest), code.count("\n", 0, offset) + 1)

    problems = []
    graph = {}
    for (a, b) in edges:
        graph.setdefault(a, set()).add(b)
    # Strongly connected components (Tarjan), each of size > 1 a cycle.
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    for comp in comps:
        inside = [f"{a}:{line} -> {b}" for (a, b), line in sorted(edges.items()) if a in comp and b in comp]
        problems.append("import cycle between " + ", ".join(comp) + "\n    " + "\n    ".join(inside))

    room = lambda rel: "main" if rel == "src/main.rs" else module_of(rel)[0] if module_of(rel) else "lib"
    rooms = {}
    for (a, b), line in sorted(edges.items()):
        ra, rb = room(a), room(b)
        if ra == rb or "lib" in (ra, rb):
            continue
        for r in (ra, rb):
            if r not in LAYER_OF:
                problems.append(f"{r} is in no layer: add it to LAYERS in tools/check_layers.py")
        if LAYER_OF.get(rb, 99) < LAYER_OF.get(ra, 99):
            problems.append(f"{a}:{line} imports {b}: `{ra}` may not import the higher room `{rb}`")
        rooms.setdefault((ra, rb), f"{a}:{line}")
    for (ra, rb), where in sorted(rooms.items()):
        if ra < rb and (rb, ra) in rooms:
            problems.append(f"`{ra}` and `{rb}` import each other ({where}, {rooms[(rb, ra)]})")

    for problem in sorted(set(problems)):
        print(f"check_layers: {problem}")
    if problems:
        return 1
    print(f"check_layers: {len(files)} files, {len(edges)} imports, no cycle, every arrow points down")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
