//! The module graph inside each crate, read from its sources: which module imports which
//! (`use crate::…`, `use super::…`, `crate::…` paths), so a tidy test can refuse a module that
//! imports a module that, directly or through others, imports it back.
//!
//! A crate's root (`lib.rs` or `main.rs`) is its assembly: it declares the modules and may
//! hold shared state, so edges into and out of it are not counted. Inline modules (a file's
//! `mod tests { … }`) are test scaffolding over their own file and are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path inside its crate: `["access", "authenticate"]`; the root is `[]`.
pub(crate) type ModulePath = Vec<String>;

/// Every module of the crate whose sources are in `src`, with the modules it imports.
pub(crate) fn module_graph(src: &Path) -> BTreeMap<ModulePath, BTreeSet<ModulePath>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<ModulePath, PathBuf> =
        files.into_iter().map(|file| (module_of(src, &file), file)).collect();
    let known: BTreeSet<ModulePath> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(module, file)| {
            let text = outside_inline_modules(&std::fs::read_to_string(file).unwrap());
            // A child module may be named without a prefix (`queries::build(…)`).
            let children: Vec<String> = known
                .iter()
                .filter(|k| k.len() == module.len() + 1 && k.starts_with(module))
                .map(|k| k[module.len()].clone())
                .collect();
            let imports = referenced_paths(&text, &children)
                .into_iter()
                .filter_map(|path| resolve(module, &path))
                .filter_map(|path| longest_known(&known, &path))
                .filter(|target| target != module && !target.is_empty())
                .collect();
            (module.clone(), imports)
        })
        .filter(|(module, _)| !module.is_empty())
        .collect()
}

/// The cycles of a module graph: each a set of two or more modules that reach each other.
pub(crate) fn cycles(graph: &BTreeMap<ModulePath, BTreeSet<ModulePath>>) -> Vec<Vec<String>> {
    let reach = |from: &ModulePath| -> BTreeSet<ModulePath> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&ModulePath> = graph.get(from).into_iter().flatten().collect();
        while let Some(next) = todo.pop() {
            if seen.insert(next.clone()) {
                todo.extend(graph.get(next).into_iter().flatten());
            }
        }
        seen
    };
    let reaches: BTreeMap<&ModulePath, BTreeSet<ModulePath>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    for (module, reached) in &reaches {
        if !reached.contains(*module) {
            continue;
        }
        let members: Vec<String> = reaches
            .iter()
            .filter(|(other, other_reach)| {
                reached.contains(**other) && other_reach.contains(*module)
            })
            .map(|(other, _)| other.join("::"))
            .collect();
        found.insert(members);
    }
    found.into_iter().collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> ModulePath {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: ModulePath =
        relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib" || p == "main") {
        parts.pop();
    }
    parts
}

/// The text before the first inline module (`mod name {`), which rustfmt'd files keep last.
fn outside_inline_modules(text: &str) -> String {
    let mut kept = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let inline = trimmed.strip_prefix("pub(crate) ").unwrap_or(trimmed);
        if inline.starts_with("mod ") && inline.trim_end().ends_with('{') {
            break;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

/// Every `crate::…`, `super::…` and `self::…` path in the text, and every path that starts
/// with one of the module's `children` (read as `self::…`), braces of `use` expanded.
fn referenced_paths(text: &str, children: &[String]) -> Vec<Vec<String>> {
    let code: String =
        text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let bytes = code.as_bytes();
    let mut paths = Vec::new();
    let child_starts: Vec<String> = children.iter().map(|c| format!("{c}::")).collect();
    let keywords = ["crate::", "super::", "self::"];
    for start in keywords.into_iter().chain(child_starts.iter().map(String::as_str)) {
        let mut from = 0;
        while let Some(found) = code[from..].find(start) {
            let at = from + found;
            from = at + start.len();
            let preceded =
                at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || b"_:".contains(&bytes[at - 1]));
            if preceded || (start == "self::" && at > 0 && bytes[at - 1] == b'$') {
                continue;
            }
            let head: Vec<String> = match start.trim_end_matches("::") {
                keyword @ ("crate" | "super" | "self") => vec![keyword.to_owned()],
                child => vec!["self".to_owned(), child.to_owned()],
            };
            paths.extend(
                expand(&code[at + start.len()..])
                    .into_iter()
                    .map(|tail| head.iter().cloned().chain(tail).collect::<Vec<_>>()),
            );
        }
    }
    paths
}

/// The paths a `use` tree starting at `text` names: `a::b`, or `{a, b::{c, d}}`.
fn expand(text: &str) -> Vec<Vec<String>> {
    let text = text.trim_start();
    if let Some(inner) = text.strip_prefix('{') {
        let mut depth = 0;
        let mut items = Vec::new();
        let mut current = String::new();
        for c in inner.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        items.push(current);
        return items.iter().filter(|i| !i.trim().is_empty()).flat_map(|i| expand(i)).collect();
    }
    let mut path = Vec::new();
    let mut rest = text;
    loop {
        let end =
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        path.push(rest[..end].to_owned());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(next) if next.starts_with('{') => {
                return expand(next)
                    .into_iter()
                    .map(|tail| path.iter().cloned().chain(tail).collect())
                    .collect();
            }
            Some(next) => rest = next,
            None => break,
        }
    }
    vec![path]
}

/// A referenced path as a path from the crate root, or `None` when it leaves the crate.
fn resolve(module: &ModulePath, path: &[String]) -> Option<ModulePath> {
    let (head, tail) = path.split_first()?;
    let mut base: ModulePath = match head.as_str() {
        "crate" => Vec::new(),
        "self" => module.clone(),
        "super" => {
            // `super` in `a/b.rs` (module `a::b`) and in `a/b/mod.rs` alike is module `a`.
            let mut parent = module.clone();
            parent.pop()?;
            parent
        }
        _ => return None,
    };
    let mut tail = tail.iter().peekable();
    while tail.peek().is_some_and(|p| *p == "super") {
        tail.next();
        base.pop()?;
    }
    base.extend(tail.cloned());
    Some(base)
}

/// The longest prefix of `path` that is a module of the crate.
fn longest_known(known: &BTreeSet<ModulePath>, path: &[String]) -> Option<ModulePath> {
    (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|prefix| known.contains(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway crate's `src` with the given files.
    fn crate_with(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("spanblame-tidy-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let file = dir.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        dir
    }

    #[test]
    fn an_upward_import_through_a_group_or_super_is_a_cycle() {
        let src = crate_with(
            "upward",
            &[
                ("lib.rs", "mod a;\nmod b;\nmod c;\nuse crate::a::A;\n"),
                ("a.rs", "//! a\nuse crate::{b::B, c};\npub struct A;\n"),
                ("b.rs", "//! b\npub struct B;\nfn f() { crate::c::g(); }\n"),
                ("c/mod.rs", "//! c\nmod d;\npub fn g() {}\n"),
                ("c/d.rs", "//! d\nuse super::super::a::A;\n"),
            ],
        );
        let graph = module_graph(&src);
        let b = |n: &str| n.split("::").map(str::to_owned).collect::<ModulePath>();
        assert_eq!(graph[&b("a")], BTreeSet::from([b("b"), b("c")]));
        assert_eq!(graph[&b("c::d")], BTreeSet::from([b("a")]));
        assert!(cycles(&graph).is_empty(), "c does not import d: {:?}", cycles(&graph));
        // d's parent now imports it back: a cycle through a, b (a imports b, b calls into c), c, d.
        std::fs::write(src.join("c/mod.rs"), "//! c\nmod d;\npub use self::d::*;\n").unwrap();
        let graph = module_graph(&src);
        assert_eq!(
            cycles(&graph),
            vec![vec!["a".to_owned(), "b".into(), "c".into(), "c::d".into()]]
        );
        let _ = std::fs::remove_dir_all(&src);
    }

    #[test]
    fn the_root_comments_and_inline_test_modules_do_not_count() {
        let src = crate_with(
            "root",
            &[
                ("lib.rs", "mod a;\nmod b;\npub struct State;\nuse a::f;\n"),
                (
                    "a.rs",
                    "//! uses crate::b::x in a comment only\nuse crate::State;\npub fn f() {}\n",
                ),
                (
                    "b.rs",
                    "//! b\nuse crate::a::f;\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::State;\n}\n",
                ),
            ],
        );
        let graph = module_graph(&src);
        assert!(graph[&vec!["a".to_owned()]].is_empty(), "{graph:?}");
        assert!(cycles(&graph).is_empty());
        let _ = std::fs::remove_dir_all(&src);
    }
}
