//! One revision of one file as the classifier reads it: its tokens in order (code, string
//! literal or comment, each with its line and the function it is in), its functions (name,
//! lines, where the body starts, a hash of their code), and the lines of its imports.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use tree_sitter::{Node, Parser};

use crate::languages::Language;

/// Files larger than this are not parsed (the line rules apply to them).
pub(crate) const MAX_PARSED_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Code,
    String,
    Comment,
}

#[derive(Debug, Clone)]
pub(crate) struct Token<'a> {
    /// 1-based line of the token's start.
    pub(crate) line: u32,
    pub(crate) start_byte: usize,
    pub(crate) text: &'a str,
    pub(crate) class: Class,
    /// The innermost function around it (an index into `functions`).
    pub(crate) function: Option<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct Function {
    pub(crate) name: String,
    /// 1-based, inclusive.
    pub(crate) first_line: u32,
    pub(crate) last_line: u32,
    /// Where the body starts (what comes before it is the signature).
    pub(crate) body_byte: usize,
    /// Its bytes.
    pub(crate) start_byte: usize,
    pub(crate) end_byte: usize,
    /// A hash of its code and string tokens: equal hashes, unchanged code.
    pub(crate) code_hash: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Parsed<'a> {
    pub(crate) tokens: Vec<Token<'a>>,
    pub(crate) functions: Vec<Function>,
    /// 1-based inclusive line ranges of import declarations.
    pub(crate) imports: Vec<(u32, u32)>,
}

impl Parsed<'_> {
    /// The innermost function that contains `line`.
    pub(crate) fn function_at(&self, line: u32) -> Option<usize> {
        self.functions
            .iter()
            .enumerate()
            .filter(|(_, f)| f.first_line <= line && line <= f.last_line)
            .min_by_key(|(_, f)| f.last_line - f.first_line)
            .map(|(i, _)| i)
    }

    pub(crate) fn is_import_line(&self, line: u32) -> bool {
        self.imports.iter().any(|&(first, last)| first <= line && line <= last)
    }
}

/// Parses `text`; `None` when it is too large or the grammar cannot be loaded.
pub(crate) fn parse<'a>(language: &Language, text: &'a str) -> Option<Parsed<'a>> {
    if text.len() > MAX_PARSED_BYTES {
        return None;
    }
    let mut parser = Parser::new();
    parser.set_language(&(language.grammar)()).ok()?;
    let tree = parser.parse(text, None)?;
    let mut parsed = Parsed::default();
    // Functions open and close around the tokens they hold: (function index, end byte).
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut stack = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        while open.last().is_some_and(|&(_, end)| node.start_byte() >= end) {
            open.pop();
        }
        let kind = node.kind();
        let line = node.start_position().row as u32 + 1;
        let whole = |class: Class, parsed: &mut Parsed<'a>, open: &[(usize, usize)]| {
            let text = &text[node.byte_range()];
            if !text.trim().is_empty() {
                let function = open.last().map(|&(f, _)| f);
                let start_byte = node.start_byte();
                parsed.tokens.push(Token { line, start_byte, text, class, function });
            }
        };
        if language.is_comment(kind) || (language.docstrings && is_docstring(node)) {
            whole(Class::Comment, &mut parsed, &open);
            continue;
        }
        if language.strings.contains(&kind) {
            whole(Class::String, &mut parsed, &open);
            continue;
        }
        if node.child_count() == 0 {
            whole(Class::Code, &mut parsed, &open);
            continue;
        }
        if language.imports.contains(&kind) {
            parsed.imports.push((line, node.end_position().row as u32 + 1));
        }
        if language.functions.contains(&kind)
            && let Some(name) = function_name(node, text)
        {
            // Without a `body` field, everything after the first line is the body.
            let body_byte = node.child_by_field_name("body").map_or_else(
                || {
                    text[node.byte_range()]
                        .find('\n')
                        .map_or(node.end_byte(), |n| node.start_byte() + n)
                },
                |b| b.start_byte(),
            );
            parsed.functions.push(Function {
                name,
                first_line: line,
                last_line: node.end_position().row as u32 + 1,
                body_byte,
                start_byte: node.start_byte(),
                end_byte: node.end_byte(),
                code_hash: 0,
            });
            open.push((parsed.functions.len() - 1, node.end_byte()));
        }
        let mut cursor = node.walk();
        let children: Vec<Node<'_>> = node.children(&mut cursor).collect();
        stack.extend(children.into_iter().rev());
    }
    // Each function's code hash, over the code and strings inside it (tokens are in
    // document order, so a function's are one run, found by bisection).
    let tokens = &parsed.tokens;
    for f in &mut parsed.functions {
        let start = tokens.partition_point(|t| t.start_byte < f.start_byte);
        let end = tokens.partition_point(|t| t.start_byte < f.end_byte);
        let mut hasher = DefaultHasher::new();
        for token in tokens[start..end].iter().filter(|t| t.class != Class::Comment) {
            token.text.hash(&mut hasher);
        }
        f.code_hash = hasher.finish();
    }
    Some(parsed)
}

/// A string that is the first statement of a module, class or function body.
fn is_docstring(node: Node<'_>) -> bool {
    if node.kind() != "expression_statement" || node.named_child_count() != 1 {
        return false;
    }
    let only_string = node.named_child(0).is_some_and(|c| c.kind() == "string");
    let first = node.parent().and_then(|p| p.named_child(0)).is_some_and(|c| c.id() == node.id());
    only_string && first
}

/// A function's name: its `name` field, or for an anonymous function what it is assigned to
/// (`const total = () => …`, `total: function () {…}`, `total = lambda`).
fn function_name(node: Node<'_>, text: &str) -> Option<String> {
    let name_of = |n: Node<'_>| Some(text[n.byte_range()].to_owned());
    if let Some(name) = node.child_by_field_name("name") {
        return name_of(name);
    }
    let parent = node.parent()?;
    for field in ["name", "key", "left"] {
        if let Some(named) = parent.child_by_field_name(field)
            && named.id() != node.id()
        {
            let name = &text[named.byte_range()];
            let last = name.rsplit(['.', ':']).next().unwrap_or(name).trim();
            if !last.is_empty() && last.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$')
            {
                return Some(last.to_owned());
            }
        }
    }
    None
}
