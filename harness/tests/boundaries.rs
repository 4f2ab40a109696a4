//! The module boundaries ARCHITECTURE.md states, checked on the code
//! itself: no import cycle anywhere in `harness/src`, and a deploy target
//! (`deploy::host`, `deploy::swarm`) never reaches the core's run, the
//! executor, or the other target. Modules are read as text: every path
//! that starts with `crate::`, `super::` or `self::` outside the unit
//! tests is an edge to the longest module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`deploy::host::plan`) → the source outside its tests.
fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).expect("harness/src is readable") {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            modules(&path, &[prefix, &[name]].concat(), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let parts = if name == "mod" || (prefix.is_empty() && name == "lib") {
                prefix.to_vec()
            } else {
                [prefix, &[name]].concat()
            };
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default().to_owned();
            out.insert(parts.join("::"), code);
        }
    }
}

/// The modules `code` of module `me` names.
fn edges(me: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let here: Vec<&str> = if me.is_empty() { Vec::new() } else { me.split("::").collect() };
    let mut out = BTreeSet::new();
    for (start, _) in code.match_indices("::") {
        let before = &code[..start];
        let word_start = before.rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).map_or(0, |i| i + 1);
        let path: Vec<&str> = code[word_start..]
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or_default()
            .split("::")
            .collect();
        if word_start + path[0].len() != start {
            continue; // not the first segment of this path
        }
        let absolute: Vec<&str> = match path[0] {
            "crate" => path[1..].to_vec(),
            "super" => [&here[..here.len().saturating_sub(1)], &path[1..]].concat(),
            "self" => [&here[..], &path[1..]].concat(),
            _ => continue,
        };
        let found = (1..=absolute.len()).rev().map(|n| absolute[..n].join("::")).find(|m| known.contains(m));
        if let Some(module) =
            found.filter(|m| m != me && !me.starts_with(&format!("{m}::")) && !m.starts_with(&format!("{me}::")))
        {
            out.insert(module);
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut sources = BTreeMap::new();
    modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut sources);
    sources.remove("main"); // the binary, beside the library
    let known: BTreeSet<String> = sources.keys().cloned().collect();
    sources.iter().map(|(me, code)| (me.clone(), edges(me, code, &known))).collect()
}

/// A path from `from` back to itself, if any.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_owned(), vec![from.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == from {
                return Some([path.clone(), vec![next.clone()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

#[test]
fn no_module_of_the_harness_imports_one_that_imports_it_back() {
    let graph = graph();
    assert!(graph.contains_key("deploy::core") && graph["deploy::core"].contains("deploy::executor"), "{graph:#?}");
    let cycles: Vec<String> =
        graph.keys().filter_map(|m| cycle_through(&graph, m)).map(|cycle| cycle.join(" -> ")).collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn a_deploy_target_uses_neither_the_core_nor_the_executor_nor_the_other_target() {
    let graph = graph();
    for (target, other) in [("deploy::host", "deploy::swarm"), ("deploy::swarm", "deploy::host")] {
        let modules = graph.iter().filter(|(m, _)| *m == target || m.starts_with(&format!("{target}::")));
        for (module, uses) in modules {
            for used in uses {
                let forbidden = used == "deploy::core"
                    || used == "deploy::executor"
                    || used == other
                    || used.starts_with(&format!("{other}::"))
                    || used == "deploy";
                assert!(!forbidden, "{module} uses {used}: a target supplies what differs, nothing more");
            }
        }
    }
}
