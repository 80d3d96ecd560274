//! The module graph of the crate, read from the sources: every module's
//! references to other modules of the crate (`use crate::…`, `crate::…`
//! paths, `super::…`), test-only code left out.
//!
//! It must stay free of cycles (a newcomer follows a run downward without
//! back-and-forth). `cargo test --test architecture -- --nocapture` prints
//! the figures the redesign is measured by: the depth of the import graph,
//! the largest modules, the `Result<_, String>` count and the places that
//! pick an exit code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`pve::judge`) → source file, for every file under `src/`.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(stem);
                walk(&path, &p, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut p = prefix.to_vec();
                if stem != "mod" && stem != "lib" && stem != "main" {
                    p.push(stem.clone());
                }
                if stem == "main" {
                    p = vec!["main".into()];
                }
                let name = if p.is_empty() {
                    "crate".to_string()
                } else {
                    p.join("::")
                };
                out.insert(name, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, &[], &mut out);
    out
}

/// The text without comments and without items under `#[cfg(test)]`.
fn production_text(text: &str) -> String {
    let no_comments: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::new();
    let mut rest = no_comments.as_str();
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "#[cfg(test)]".len()..];
        let brace = after.find('{');
        let semi = after.find(';');
        let end = match (brace, semi) {
            (Some(b), Some(s)) if s < b => s + 1,
            (None, Some(s)) => s + 1,
            (Some(b), _) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (j, c) in after[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + j + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, None) => after.len(),
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Every path a use tree or expression names from `crate::` or `super::`,
/// as segments (`["engine", "Outcome"]`).
fn referenced_paths(text: &str, module: &str) -> Vec<Vec<String>> {
    let bytes: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let parent: Vec<String> = if module == "crate" || module == "main" {
        vec![]
    } else {
        let mut p: Vec<String> = module.split("::").map(String::from).collect();
        p.pop();
        p
    };
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < bytes.len() {
        let starts = |word: &str| {
            let w: Vec<char> = word.chars().collect();
            bytes[i..].starts_with(&w) && (i == 0 || !is_ident(bytes[i - 1]))
        };
        let base = if starts("crate::") {
            i += "crate::".len();
            Some(vec![])
        } else if starts("super::") {
            i += "super::".len();
            Some(parent.clone())
        } else if starts("zfs_nfs_replica::") && module == "main" {
            i += "zfs_nfs_replica::".len();
            Some(vec![])
        } else {
            None
        };
        match base {
            Some(base) => {
                let (paths, next) = parse_tree(&bytes, i, base);
                out.extend(paths);
                i = next.max(i + 1);
            }
            None => i += 1,
        }
    }
    out
}

/// One use tree from `i`: `a::b`, `a::{b, c::d}`, `a::b as c`.
fn parse_tree(s: &[char], mut i: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let skip_ws = |mut i: usize| {
        while i < s.len() && s[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let mut path = prefix;
    loop {
        i = skip_ws(i);
        if i < s.len() && s[i] == '{' {
            let mut out = Vec::new();
            i += 1;
            loop {
                i = skip_ws(i);
                if i >= s.len() {
                    return (out, i);
                }
                if s[i] == '}' {
                    return (out, i + 1);
                }
                if s[i] == ',' {
                    i += 1;
                    continue;
                }
                let (sub, next) = parse_tree(s, i, path.clone());
                out.extend(sub);
                // Skip `as alias` and anything else up to the separator.
                let mut j = next;
                while j < s.len() && s[j] != ',' && s[j] != '}' {
                    j += 1;
                }
                i = j;
            }
        }
        let start = i;
        while i < s.len() && is_ident(s[i]) {
            i += 1;
        }
        if start == i {
            return (vec![path], i);
        }
        let seg: String = s[start..i].iter().collect();
        if seg == "self" {
            return (vec![path], i);
        }
        path.push(seg);
        if s[i..].starts_with(&[':', ':']) {
            i += 2;
        } else {
            return (vec![path], i);
        }
    }
}

struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
    files: BTreeMap<String, PathBuf>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = modules(&src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in &files {
        let text = production_text(&std::fs::read_to_string(path).unwrap());
        let deps = edges.entry(module.clone()).or_default();
        for segs in referenced_paths(&text, module) {
            // The longest prefix that is a module of the crate.
            let target = (1..=segs.len())
                .rev()
                .map(|n| segs[..n].join("::"))
                .find(|m| files.contains_key(m));
            if let Some(t) = target
                && &t != module
                && !module.starts_with(&format!("{t}::"))
            {
                deps.insert(t);
            }
        }
    }
    Graph { edges, files }
}

/// The longest chain of imports (the modules on it), and every cycle found
/// (a back edge is left out of the chain).
fn depth(g: &Graph) -> (usize, Vec<String>, Vec<Vec<String>>) {
    fn visit(
        m: &str,
        g: &Graph,
        done: &mut BTreeMap<String, (usize, Vec<String>)>,
        stack: &mut Vec<String>,
        cycles: &mut Vec<Vec<String>>,
    ) -> Option<(usize, Vec<String>)> {
        if let Some(d) = done.get(m) {
            return Some(d.clone());
        }
        if let Some(pos) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(m.to_string());
            cycles.push(cycle);
            return None;
        }
        stack.push(m.to_string());
        let mut best = (1, vec![m.to_string()]);
        for dep in g.edges.get(m).into_iter().flatten() {
            if let Some((d, chain)) = visit(dep, g, done, stack, cycles)
                && d + 1 > best.0
            {
                let mut c = vec![m.to_string()];
                c.extend(chain);
                best = (d + 1, c);
            }
        }
        stack.pop();
        done.insert(m.to_string(), best.clone());
        Some(best)
    }
    let mut done = BTreeMap::new();
    let mut cycles = Vec::new();
    let mut best = (0, vec![]);
    for m in g.edges.keys() {
        if let Some(d) = visit(m, g, &mut done, &mut Vec::new(), &mut cycles)
            && d.0 > best.0
        {
            best = d;
        }
    }
    (best.0, best.1, cycles)
}

#[test]
fn the_module_graph_has_no_cycle() {
    let (_, _, cycles) = depth(&graph());
    let shown: Vec<String> = cycles.iter().map(|c| c.join(" → ")).collect();
    assert!(shown.is_empty(), "import cycles:\n{}", shown.join("\n"));
}

#[test]
fn figures() {
    let g = graph();
    let (d, chain, cycles) = depth(&g);
    println!("import-graph depth: {d} ({})", chain.join(" → "));
    println!("import cycles: {}", cycles.len());
    let edges: usize = g.edges.values().map(|e| e.len()).sum();
    println!("modules: {}, import edges: {edges}", g.files.len());
    let mut sizes: Vec<(usize, String)> = g
        .files
        .iter()
        .map(|(m, p)| {
            let text = std::fs::read_to_string(p).unwrap();
            (production_text(&text).lines().count(), m.clone())
        })
        .collect();
    sizes.sort_by(|a, b| b.cmp(a));
    let top: Vec<String> = sizes
        .iter()
        .take(5)
        .map(|(n, m)| format!("{m} {n}"))
        .collect();
    println!("largest modules (lines without tests): {}", top.join(", "));
    let mut string_results = 0;
    let mut exit_picks = 0;
    let mut typed_endings = 0;
    for (m, p) in &g.files {
        let text = production_text(&std::fs::read_to_string(p).unwrap());
        string_results += string_results_in(&text);
        if m != "exit" {
            exit_picks += exit_codes_named(&text);
            typed_endings += text.matches("Exit::").count();
        }
    }
    println!("`Result<_, String>` in production code: {string_results}");
    println!("places that pick a numeric exit code outside `exit`: {exit_picks}");
    println!("places that name a typed ending (`Exit::…`) outside `exit`: {typed_endings}");
    assert!(d > 0);
}

/// `Result<…, String>` with the error type exactly `String`.
fn string_results_in(text: &str) -> usize {
    let mut n = 0;
    for (i, _) in text.match_indices("Result<") {
        let mut depth = 0;
        let mut last_comma = None;
        for (j, c) in text[i + "Result".len()..].char_indices() {
            match c {
                '<' | '(' => depth += 1,
                '>' | ')' => {
                    depth -= 1;
                    if depth == 0 {
                        let body = &text[i + "Result".len()..i + "Result".len() + j];
                        if let Some(k) = last_comma
                            && body[k + 1..].trim() == "String"
                        {
                            n += 1;
                        }
                        break;
                    }
                }
                ',' if depth == 1 => last_comma = Some(j),
                _ => {}
            }
        }
    }
    n
}

/// Mentions of an exit-code constant (`exit::REFUSED`) or a literal code.
fn exit_codes_named(text: &str) -> usize {
    let consts = [
        "OK",
        "NOTHING_TO_DO",
        "CONFIG",
        "TRANSIENT",
        "REFUSED",
        "INTERNAL",
        "UNKNOWN",
    ];
    consts
        .iter()
        .map(|c| {
            text.match_indices(&format!("exit::{c}"))
                .filter(|(i, _)| {
                    let after = text[i + 6 + c.len()..].chars().next();
                    !after.is_some_and(|a| a.is_alphanumeric() || a == '_')
                })
                .count()
        })
        .sum::<usize>()
        + text.matches("ExitCode::from(").count()
}
