//! The languages read by syntax, by file extension: each one's grammar and the node kinds
//! that are functions, comments, string literals and imports in it.

use tree_sitter::Language as Grammar;

/// One language's grammar and node kinds.
pub(crate) struct Language {
    pub(crate) name: &'static str,
    pub(crate) grammar: fn() -> Grammar,
    /// Named functions and methods (their `name` field names them), and anonymous ones
    /// named by what they are assigned to.
    pub(crate) functions: &'static [&'static str],
    pub(crate) strings: &'static [&'static str],
    pub(crate) imports: &'static [&'static str],
    /// Whether a string that is a block's first statement is a docstring (Python).
    pub(crate) docstrings: bool,
}

impl Language {
    /// A comment in any grammar: its kind says so (`comment`, `line_comment`, ...).
    pub(crate) fn is_comment(&self, kind: &str) -> bool {
        kind.contains("comment")
    }
}

const PYTHON: Language = Language {
    name: "Python",
    grammar: || tree_sitter_python::LANGUAGE.into(),
    functions: &["function_definition"],
    strings: &["string", "concatenated_string"],
    imports: &["import_statement", "import_from_statement", "future_import_statement"],
    docstrings: true,
};

const GO: Language = Language {
    name: "Go",
    grammar: || tree_sitter_go::LANGUAGE.into(),
    functions: &["function_declaration", "method_declaration", "func_literal"],
    strings: &["interpreted_string_literal", "raw_string_literal"],
    imports: &["import_declaration", "package_clause"],
    docstrings: false,
};

const JAVA: Language = Language {
    name: "Java",
    grammar: || tree_sitter_java::LANGUAGE.into(),
    functions: &["method_declaration", "constructor_declaration", "lambda_expression"],
    strings: &["string_literal", "text_block", "character_literal"],
    imports: &["import_declaration", "package_declaration"],
    docstrings: false,
};

const JS_FUNCTIONS: &[&str] = &[
    "function_declaration",
    "generator_function_declaration",
    "method_definition",
    "function_expression",
    "function",
    "arrow_function",
];
const JS_STRINGS: &[&str] = &["string", "template_string"];
const JS_IMPORTS: &[&str] = &["import_statement"];

const JAVASCRIPT: Language = Language {
    name: "JavaScript",
    grammar: || tree_sitter_javascript::LANGUAGE.into(),
    functions: JS_FUNCTIONS,
    strings: JS_STRINGS,
    imports: JS_IMPORTS,
    docstrings: false,
};

const TYPESCRIPT: Language = Language {
    name: "TypeScript",
    grammar: || tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
    functions: JS_FUNCTIONS,
    strings: JS_STRINGS,
    imports: JS_IMPORTS,
    docstrings: false,
};

const TSX: Language = Language {
    name: "TSX",
    grammar: || tree_sitter_typescript::LANGUAGE_TSX.into(),
    functions: JS_FUNCTIONS,
    strings: JS_STRINGS,
    imports: JS_IMPORTS,
    docstrings: false,
};

const RUST: Language = Language {
    name: "Rust",
    grammar: || tree_sitter_rust::LANGUAGE.into(),
    functions: &["function_item"],
    strings: &["string_literal", "raw_string_literal", "char_literal"],
    imports: &["use_declaration", "extern_crate_declaration", "mod_item"],
    docstrings: false,
};

const RUBY: Language = Language {
    name: "Ruby",
    grammar: || tree_sitter_ruby::LANGUAGE.into(),
    functions: &["method", "singleton_method"],
    strings: &["string", "heredoc_body", "character"],
    imports: &[],
    docstrings: false,
};

const PHP: Language = Language {
    name: "PHP",
    grammar: || tree_sitter_php::LANGUAGE_PHP.into(),
    functions: &["function_definition", "method_declaration", "anonymous_function"],
    strings: &["string", "encapsed_string", "heredoc", "nowdoc"],
    imports: &["namespace_use_declaration", "namespace_definition"],
    docstrings: false,
};

const CSHARP: Language = Language {
    name: "C#",
    grammar: || tree_sitter_c_sharp::LANGUAGE.into(),
    functions: &["method_declaration", "constructor_declaration", "local_function_statement"],
    strings: &[
        "string_literal",
        "verbatim_string_literal",
        "raw_string_literal",
        "interpolated_string_expression",
        "character_literal",
    ],
    imports: &["using_directive"],
    docstrings: false,
};

/// The language of a file, by its extension; `None` for one that is not parsed.
pub(crate) fn of(path: &str) -> Option<&'static Language> {
    let extension = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    Some(match extension.as_str() {
        "py" | "pyi" => &PYTHON,
        "go" => &GO,
        "java" => &JAVA,
        "js" | "mjs" | "cjs" | "jsx" => &JAVASCRIPT,
        "ts" | "mts" | "cts" => &TYPESCRIPT,
        "tsx" => &TSX,
        "rs" => &RUST,
        "rb" => &RUBY,
        "php" => &PHP,
        "cs" => &CSHARP,
        _ => return None,
    })
}

/// The languages parsed, for messages and documentation.
pub fn names() -> Vec<&'static str> {
    [PYTHON, GO, JAVA, JAVASCRIPT, TYPESCRIPT, TSX, RUST, RUBY, PHP, CSHARP]
        .iter()
        .map(|l| l.name)
        .collect()
}
