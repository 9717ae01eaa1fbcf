//! Where a function is in a source file, read from its text: the lines of the function that
//! encloses a line (or that has a name), so blame can ask who last changed the code a span
//! runs rather than the line it names. A span's `code.line.number` is often the `def` line,
//! which rarely changes; the body is what changes.
//!
//! Without a parser for every language, the boundaries come from each family's layout:
//! indentation for Python (`def` to the last line indented deeper), `def`…`end` for Ruby, and
//! braces for the C family (Go, Rust, Java, Kotlin, C#, C/C++, JavaScript/TypeScript, Swift,
//! PHP, Scala). Braces inside strings, characters and comments are skipped. An unknown
//! language gives `None`, never a guess.

/// Lines of a file, both 1-based and inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extent {
    pub first_line: u32,
    pub last_line: u32,
}

impl Extent {
    pub fn contains(&self, line: u32) -> bool {
        (self.first_line..=self.last_line).contains(&line)
    }

    pub fn lines(&self) -> u32 {
        self.last_line - self.first_line + 1
    }
}

/// How a language marks where its functions begin and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Indentation,
    DefEnd,
    Braces,
}

fn family(path: &str) -> Option<Family> {
    let extension = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match extension.as_str() {
        "py" | "pyw" => Family::Indentation,
        "rb" => Family::DefEnd,
        "go" | "rs" | "java" | "kt" | "kts" | "cs" | "c" | "h" | "cc" | "cpp" | "cxx" | "hpp"
        | "js" | "jsx" | "mjs" | "cjs" | "ts" | "tsx" | "swift" | "php" | "scala" | "dart" => {
            Family::Braces
        }
        _ => return None,
    })
}

/// The function that encloses `line`, or else the one named `function` (its last segment:
/// `checkout.promotions.apply_promotions`, `cart.(*Service).Add` and `Cart::add` all name
/// `apply_promotions`, `Add`, `add`). `None` when neither is found or the language is unknown.
pub fn function_extent(
    path: &str,
    text: &str,
    line: Option<u32>,
    function: Option<&str>,
) -> Option<Extent> {
    let family = family(path)?;
    let lines: Vec<&str> = text.lines().collect();
    let functions = functions(family, &lines);
    if let Some(line) = line.filter(|l| *l >= 1 && (*l as usize) <= lines.len()) {
        // The innermost function holding the line: the one that starts last.
        let enclosing = functions
            .iter()
            .filter(|f| f.extent.contains(line))
            .max_by_key(|f| f.extent.first_line);
        if let Some(found) = enclosing {
            return Some(found.extent);
        }
    }
    let wanted = last_segment(function?)?;
    functions.iter().find(|f| f.name == wanted).map(|f| f.extent)
}

fn last_segment(function: &str) -> Option<&str> {
    let name = function
        .rsplit(['.', ':', '/', ' ', '#', '\\'])
        .find(|segment| !segment.is_empty())?
        .trim_end_matches(|c: char| !(c.is_alphanumeric() || c == '_'));
    (!name.is_empty()).then_some(name)
}

#[derive(Debug)]
struct Function<'a> {
    name: &'a str,
    extent: Extent,
}

fn functions<'a>(family: Family, lines: &[&'a str]) -> Vec<Function<'a>> {
    (0..lines.len())
        .filter_map(|i| {
            let name = header_name(family, lines[i])?;
            let last = match family {
                Family::Indentation => indented_end(lines, i),
                Family::DefEnd => def_end(lines, i),
                Family::Braces => brace_end(lines, i)?,
            };
            let first = decorated_start(family, lines, i);
            Some(Function {
                name,
                extent: Extent { first_line: first as u32 + 1, last_line: last as u32 + 1 },
            })
        })
        .collect()
}

/// The name a line declares a function by, if it does.
fn header_name(family: Family, line: &str) -> Option<&str> {
    let code = line.trim_start();
    let ident = |rest: &'_ str| -> Option<usize> {
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        (end > 0).then_some(end)
    };
    let after_keyword = |keywords: &[&str]| -> Option<&str> {
        let mut rest = code;
        // Modifiers before the keyword (`pub async fn`, `public static function`, `async def`).
        loop {
            if let Some(keyword) = keywords.iter().find(|k| {
                rest.strip_prefix(**k).is_some_and(|after| after.starts_with([' ', '\t']))
            }) {
                let after = rest[keyword.len()..].trim_start();
                // Go methods: `func (s *Service) Add(`.
                let after = match after.strip_prefix('(') {
                    Some(receiver) => receiver.split_once(')')?.1.trim_start(),
                    None => after,
                };
                let end = ident(after)?;
                return Some(&after[..end]);
            }
            let word = ident(rest)?;
            let modifier = &rest[..word];
            if !MODIFIERS.contains(&modifier) && !modifier.starts_with("pub") {
                return None;
            }
            rest = rest[word..].trim_start_matches([' ', '\t', ')']);
            if let Some(inner) = rest.strip_prefix('(') {
                // `pub(crate)`.
                rest = inner.split_once(')')?.1.trim_start();
            }
        }
    };
    match family {
        Family::Indentation => after_keyword(&["def"]),
        Family::DefEnd => after_keyword(&["def"]).map(|n| n.trim_start_matches("self.")),
        Family::Braces => {
            after_keyword(&["fn", "func", "function", "fun", "def"]).or_else(|| c_like_method(code))
        }
    }
}

/// Words that may come before a function keyword.
const MODIFIERS: &[&str] = &[
    "pub",
    "async",
    "const",
    "unsafe",
    "extern",
    "export",
    "default",
    "public",
    "private",
    "protected",
    "internal",
    "static",
    "final",
    "override",
    "open",
    "suspend",
    "inline",
    "abstract",
    "virtual",
    "sealed",
];

/// A Java, C#, C++ or TypeScript method header: `…name(…)` with the body's brace after it,
/// not a call, control statement or declaration ending in `;`.
fn c_like_method(code: &str) -> Option<&str> {
    const NOT_FUNCTIONS: &[&str] = &[
        "if",
        "for",
        "while",
        "switch",
        "catch",
        "return",
        "else",
        "do",
        "try",
        "new",
        "throw",
        "using",
        "lock",
        "foreach",
        "synchronized",
        "when",
        "elif",
        "with",
        "await",
    ];
    if code.ends_with(';') || code.starts_with("//") || code.starts_with('*') || code.contains('=')
    {
        return None;
    }
    let open = code.find('(')?;
    let before = code[..open].trim_end();
    let name_start =
        before.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
    let name = &before[name_start..];
    let words = before[..name_start].split_whitespace().count();
    // `void add(`, `public int Add(`, `Cart::add(`: a type or modifier before the name, or a
    // method body's `{` on the same line after a bare `name(…)` (JavaScript classes).
    let has_type = words >= 1 || before[..name_start].ends_with("::");
    let body_here = code.trim_end().ends_with('{');
    if name.is_empty() || NOT_FUNCTIONS.contains(&name) || !(has_type || body_here) {
        return None;
    }
    if NOT_FUNCTIONS.iter().any(|k| before.split_whitespace().next() == Some(*k)) {
        return None;
    }
    Some(name)
}

fn indentation(line: &str) -> usize {
    line.chars().take_while(|c| c.is_whitespace()).map(|c| if c == '\t' { 8 } else { 1 }).sum()
}

fn is_blank_or_comment(line: &str) -> bool {
    let code = line.trim();
    code.is_empty() || code.starts_with('#')
}

/// Python: the last line indented deeper than the `def`, before the first line that is not.
fn indented_end(lines: &[&str], header: usize) -> usize {
    let own = indentation(lines[header]);
    let mut last = header;
    // A signature may span lines: `def f(\n    a,\n):`.
    let mut i = header;
    while i < lines.len() && !lines[i].trim_end().ends_with(':') {
        i += 1;
        last = i.min(lines.len() - 1);
    }
    for (offset, line) in lines.iter().enumerate().skip(i + 1) {
        if is_blank_or_comment(line) {
            continue;
        }
        if indentation(line) <= own {
            break;
        }
        last = offset;
    }
    last
}

/// Ruby: the `end` at the `def`'s own indentation.
fn def_end(lines: &[&str], header: usize) -> usize {
    let own = indentation(lines[header]);
    lines
        .iter()
        .enumerate()
        .skip(header + 1)
        .find(|(_, line)| indentation(line) == own && line.trim() == "end")
        .map_or(header, |(i, _)| i)
}

/// Decorators and annotations directly above a header belong to the function.
fn decorated_start(family: Family, lines: &[&str], header: usize) -> usize {
    let mark = match family {
        Family::Indentation => '@',
        Family::Braces => '@',
        Family::DefEnd => return header,
    };
    let mut first = header;
    while first > 0 && lines[first - 1].trim_start().starts_with(mark) {
        first -= 1;
    }
    first
}

/// C family: the line of the brace that closes the first brace opened at or after the header.
fn brace_end(lines: &[&str], header: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut opened = false;
    let mut block_comment = false;
    for (i, line) in lines.iter().enumerate().skip(header) {
        let mut chars = line.chars().peekable();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            if block_comment {
                if c == '*' && chars.peek() == Some(&'/') {
                    chars.next();
                    block_comment = false;
                }
                continue;
            }
            if let Some(q) = quote {
                if c == '\\' {
                    chars.next();
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '/' if chars.peek() == Some(&'/') => break,
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    block_comment = true;
                }
                '"' | '`' => quote = Some(c),
                // A character literal, not a Rust lifetime (`'a`): `'x'` or `'\n'`.
                '\'' => {
                    let rest: String = chars.clone().take(3).collect();
                    if rest.starts_with('\\') || rest.chars().nth(1) == Some('\'') {
                        quote = Some('\'');
                    }
                }
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' if depth > 0 => {
                    depth -= 1;
                    if opened && depth == 0 {
                        return Some(i);
                    }
                }
                // A declaration without a body (`fn f();` in a trait, a prototype).
                ';' if !opened => return None,
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTHON: &str = "\
import db


@traced
def apply_promotions(order):
    \"\"\"Applies the first-order promotion.\"\"\"
    history = db.order_history(order.customer)

    if not history:
        # first order
        order.discount = 10
    return order


def total(order):
    return sum(i.price for i in order.items)
";

    #[test]
    fn python_functions_run_from_their_decorators_to_their_last_indented_line() {
        let extent = |line| function_extent("checkout/promotions.py", PYTHON, Some(line), None);
        let apply = Extent { first_line: 4, last_line: 12 };
        assert_eq!(extent(5), Some(apply), "the def line");
        assert_eq!(extent(9), Some(apply), "a line in the body");
        assert_eq!(extent(8), Some(apply), "a blank line inside");
        assert_eq!(extent(16), Some(Extent { first_line: 15, last_line: 16 }));
        assert_eq!(extent(1), None, "module level");
        assert_eq!(
            function_extent("p.py", PYTHON, None, Some("checkout.promotions.apply_promotions")),
            Some(apply)
        );
        assert_eq!(function_extent("p.py", PYTHON, None, Some("missing")), None);
    }

    #[test]
    fn brace_languages_end_at_the_matching_brace_ignoring_strings_and_comments() {
        let go = "package cart\n\nfunc (s *Service) Add(item Item) error {\n\tif item.Qty == 0 {\n\t\treturn errors.New(\"} no\")\n\t}\n\t// } not this\n\treturn nil\n}\n\nfunc Total() int { return 0 }\n";
        assert_eq!(
            function_extent("cart/service.go", go, Some(5), None),
            Some(Extent { first_line: 3, last_line: 9 })
        );
        assert_eq!(
            function_extent("cart/service.go", go, None, Some("cart.(*Service).Add")),
            Some(Extent { first_line: 3, last_line: 9 })
        );
        assert_eq!(
            function_extent("cart/service.go", go, Some(11), None),
            Some(Extent { first_line: 11, last_line: 11 })
        );
        let java = "class Cart {\n    @Override\n    public int add(Item item) {\n        if (item == null) {\n            return 0;\n        }\n        return items.add(item);\n    }\n}\n";
        assert_eq!(
            function_extent("src/Cart.java", java, Some(5), None),
            Some(Extent { first_line: 2, last_line: 8 })
        );
        let rust = "impl Cart {\n    pub(crate) async fn add<'a>(&mut self, c: char) -> u32 {\n        let open = '{';\n        1\n    }\n}\n";
        assert_eq!(
            function_extent("src/cart.rs", rust, Some(4), None),
            Some(Extent { first_line: 2, last_line: 5 })
        );
        let js = "export async function checkout(cart) {\n  return `${cart.id}}`;\n}\n";
        assert_eq!(
            function_extent("src/checkout.js", js, Some(2), None),
            Some(Extent { first_line: 1, last_line: 3 })
        );
    }

    #[test]
    fn ruby_methods_end_at_their_end_and_unknown_languages_give_nothing() {
        let ruby = "class Cart\n  def add(item)\n    items << item\n  end\nend\n";
        assert_eq!(
            function_extent("app/cart.rb", ruby, Some(3), None),
            Some(Extent { first_line: 2, last_line: 4 })
        );
        assert_eq!(function_extent("notes.txt", "def x():\n  pass\n", Some(1), None), None);
        assert_eq!(function_extent("Makefile", "all:\n", Some(1), None), None);
    }

    #[test]
    fn calls_and_control_statements_are_not_functions() {
        for line in [
            "    if (ready) {",
            "    for (int i = 0; i < n; i++) {",
            "    cart.add(item);",
            "    x = compute(y) {",
            "    return build(a);",
        ] {
            assert_eq!(header_name(Family::Braces, line), None, "{line}");
        }
        assert_eq!(header_name(Family::Braces, "  render(props) {"), Some("render"));
        assert_eq!(header_name(Family::Braces, "func main() {"), Some("main"));
    }
}
