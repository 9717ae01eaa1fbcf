//! Reading code like a reviewer: which function each hunk of a commit changes, and whether it
//! changes code at all, from the tree-sitter syntax trees of the file before and after.
//!
//! A hunk's removed lines are read in the old tree and its added lines in the new one, as
//! tokens (code, string literal, comment; Python docstrings count as comments), each tagged
//! with the function around it. When both sides hold the same code tokens in the same
//! functions, the hunk changes only comments or layout; when only string literals differ,
//! only strings; when every differing line is an import, only imports. The functions a hunk
//! changes are those around its differing tokens, signature or body by where the body
//! starts. A function removed in one place and added unchanged in another (in any file of
//! the commit) has moved, not changed. Languages: see [`languages`]; any other file, or
//! one over 2 MiB, gets `None` and the line rules of `analysis::suspects`.
//!
//! May depend on: `analysis` (whose types it fills), tree-sitter and its grammars.
//! **Never:** read files, run git, or score commits (`jobs` reads the revisions,
//! `analysis::suspects` scores).

mod languages;
mod parse;

use std::collections::{BTreeMap, HashSet};

pub use analysis::suspects::{ChangeKind, FunctionTouch, HunkSyntax};
pub use languages::names as language_names;

use crate::parse::{Class, Parsed, Token};

/// One file of a commit: its texts before and after (`None` when it did not exist), and its
/// hunks.
#[derive(Debug, Clone)]
pub struct FileChange<'a> {
    /// The path after the commit (before it, for a deleted file): it names the language.
    pub path: &'a str,
    pub old_text: Option<&'a str>,
    pub new_text: Option<&'a str>,
    pub hunks: Vec<HunkLines>,
}

/// The lines a hunk removes (numbered in the old text) and adds (in the new), 1-based.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HunkLines {
    pub removed: Vec<u32>,
    pub added: Vec<u32>,
}

impl HunkLines {
    /// Reads a unified-diff hunk's `-`/`+`/context lines from its start lines.
    pub fn from_unified(old_start: u32, new_start: u32, lines: &[String]) -> HunkLines {
        let (mut old, mut new) = (old_start, new_start);
        let mut hunk = HunkLines::default();
        for line in lines {
            match line.as_bytes().first() {
                Some(b'-') => {
                    hunk.removed.push(old);
                    old += 1;
                }
                Some(b'+') => {
                    hunk.added.push(new);
                    new += 1;
                }
                Some(b'\\') => {}
                _ => {
                    old += 1;
                    new += 1;
                }
            }
        }
        hunk
    }
}

/// Each file's hunks classified, in order; `None` for a file whose language is not read.
pub fn classify<'a>(files: &[FileChange<'a>]) -> Vec<Option<Vec<HunkSyntax>>> {
    /// One side: `Some(None)` when the file did not exist, `None` when it cannot be parsed.
    fn side<'a>(
        language: &languages::Language,
        text: Option<&'a str>,
    ) -> Option<Option<Parsed<'a>>> {
        match text {
            None => Some(None),
            Some(text) => parse::parse(language, text).map(Some),
        }
    }
    let parsed: Vec<Option<(Option<Parsed<'a>>, Option<Parsed<'a>>)>> = files
        .iter()
        .map(|file| {
            let language = languages::of(file.path)?;
            Some((side(language, file.old_text)?, side(language, file.new_text)?))
        })
        .collect();
    // Functions unchanged on both sides of the commit, wherever they are: a hunk that only
    // removes or adds one of them moved it.
    let hashes = |sides: &mut dyn Iterator<Item = &Parsed<'_>>| {
        sides
            .flat_map(|p| p.functions.iter().map(|f| (f.name.clone(), f.code_hash)))
            .collect::<HashSet<(String, u64)>>()
    };
    let before = hashes(&mut parsed.iter().flatten().filter_map(|(old, _)| old.as_ref()));
    let after = hashes(&mut parsed.iter().flatten().filter_map(|(_, new)| new.as_ref()));
    let unchanged: HashSet<&(String, u64)> = before.intersection(&after).collect();
    files
        .iter()
        .zip(&parsed)
        .map(|(file, sides)| {
            let (old, new) = sides.as_ref()?;
            let empty = Parsed::default();
            let (old, new) = (old.as_ref().unwrap_or(&empty), new.as_ref().unwrap_or(&empty));
            Some(file.hunks.iter().map(|h| classify_hunk(old, new, h, &unchanged)).collect())
        })
        .collect()
}

/// A token as compared across the two sides: its function's name and its text.
type Key<'a> = (Option<&'a str>, &'a str);

fn key<'a>(parsed: &'a Parsed<'a>, i: usize) -> Key<'a> {
    let token: &Token<'a> = &parsed.tokens[i];
    (token.function.map(|f| parsed.functions[f].name.as_str()), token.text)
}

fn classify_hunk(
    old: &Parsed<'_>,
    new: &Parsed<'_>,
    hunk: &HunkLines,
    unchanged: &HashSet<&(String, u64)>,
) -> HunkSyntax {
    // Tokens are in document order, so each line's are one run: found by bisection.
    let on = |parsed: &'_ Parsed<'_>, lines: &[u32]| -> Vec<usize> {
        let mut lines = lines.to_vec();
        lines.sort_unstable();
        lines.dedup();
        let mut tokens = Vec::new();
        for line in lines {
            let start = parsed.tokens.partition_point(|t| t.line < line);
            let end = parsed.tokens.partition_point(|t| t.line <= line);
            tokens.extend(start..end);
        }
        tokens
    };
    let (old_tokens, new_tokens) = (on(old, &hunk.removed), on(new, &hunk.added));
    let keys = |parsed: &Parsed<'_>, tokens: &[usize], keep: &dyn Fn(Class) -> bool| {
        tokens
            .iter()
            .filter(|&&i| keep(parsed.tokens[i].class))
            .map(|&i| key(parsed, i))
            .map(|(f, t)| (f.map(str::to_owned), t.to_owned()))
            .collect::<Vec<(Option<String>, String)>>()
    };
    let code = |c: Class| c != Class::Comment;
    let program = |c: Class| c == Class::Code;
    let comments = |c: Class| c == Class::Comment;
    if keys(old, &old_tokens, &code) == keys(new, &new_tokens, &code) {
        let kind = if keys(old, &old_tokens, &comments) == keys(new, &new_tokens, &comments) {
            ChangeKind::FormattingOnly
        } else {
            ChangeKind::CommentsOnly
        };
        // The functions it touches, for the reason that gives them no credit.
        let mut functions: Vec<FunctionTouch> = Vec::new();
        for (parsed, lines) in [(old, &hunk.removed), (new, &hunk.added)] {
            for f in lines.iter().filter_map(|&l| parsed.function_at(l)) {
                let name = &parsed.functions[f].name;
                if !functions.iter().any(|t| &t.name == name) {
                    functions.push(FunctionTouch { name: name.clone(), signature_only: false });
                }
            }
        }
        return HunkSyntax { kind, functions };
    }
    // The tokens one side has and the other has not, by (function, text), counted.
    let differing = |this: &Parsed<'_>, mine: &[usize], other: &Parsed<'_>, theirs: &[usize]| {
        let mut counts: BTreeMap<Key<'_>, i64> = BTreeMap::new();
        for &i in theirs.iter().filter(|&&i| code(other.tokens[i].class)) {
            *counts.entry(key(other, i)).or_default() += 1;
        }
        let mut tokens = Vec::new();
        for &i in mine.iter().filter(|&&i| code(this.tokens[i].class)) {
            let count = counts.entry(key(this, i)).or_default();
            if *count > 0 {
                *count -= 1;
            } else {
                tokens.push(i);
            }
        }
        tokens
    };
    let old_differing = differing(old, &old_tokens, new, &new_tokens);
    let new_differing = differing(new, &new_tokens, old, &old_tokens);
    let imports = |parsed: &Parsed<'_>, tokens: &[usize]| {
        tokens.iter().all(|&i| parsed.is_import_line(parsed.tokens[i].line))
    };
    let kind = if keys(old, &old_tokens, &program) == keys(new, &new_tokens, &program) {
        ChangeKind::StringsOnly
    } else if imports(old, &old_differing) && imports(new, &new_differing) {
        ChangeKind::ImportsOnly
    } else {
        ChangeKind::Code
    };
    // The functions around the differing tokens; ones that exist unchanged on both sides of
    // the commit were moved, not changed.
    let mut functions: Vec<FunctionTouch> = Vec::new();
    let mut outside_functions = false;
    let mut moved = false;
    for (parsed, tokens) in [(old, &old_differing), (new, &new_differing)] {
        for &i in tokens {
            let token = &parsed.tokens[i];
            let Some(f) = token.function else {
                outside_functions = true;
                continue;
            };
            let function = &parsed.functions[f];
            if unchanged.contains(&(function.name.clone(), function.code_hash)) {
                moved = true;
                continue;
            }
            let signature_only = token.start_byte < function.body_byte;
            match functions.iter_mut().find(|t| t.name == function.name) {
                Some(touch) => touch.signature_only &= signature_only,
                None => {
                    functions.push(FunctionTouch { name: function.name.clone(), signature_only })
                }
            }
        }
    }
    let kind = if moved && functions.is_empty() && !outside_functions {
        ChangeKind::MovedOnly
    } else {
        kind
    };
    HunkSyntax { kind, functions }
}

#[cfg(test)]
mod tests;
