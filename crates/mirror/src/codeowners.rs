//! CODEOWNERS in both syntaxes forges use.
//!
//! GitHub and GitLab: `pattern owner...` lines, `#` comments, GitLab `[Section]` headers, and
//! the last matching pattern wins. Patterns follow gitignore rules: a leading `/` anchors at
//! the repository root, a trailing `/` matches everything below a directory, `*` stays within
//! a path segment, `**` crosses segments, and a pattern with no inner `/` matches at any depth.
//!
//! Gitea and Forgejo: each pattern is a Go regular expression matched against the whole path
//! (`^pattern$`), `!pattern` matches every path the expression does not, `\` escapes `#`, a
//! space or itself, and the owners of **every** matching rule apply, in file order. A line
//! whose expression does not compile is skipped, as Gitea does.

use model::ForgeKind;
use regex::Regex;

/// Where CODEOWNERS may live, in the order the forge looks; the first found is used.
pub(crate) fn locations(forge: Option<ForgeKind>) -> &'static [(&'static str, Syntax)] {
    use Syntax::{Gitea, Gitignore};
    match forge {
        Some(ForgeKind::Gitea) => {
            &[("CODEOWNERS", Gitea), ("docs/CODEOWNERS", Gitea), (".gitea/CODEOWNERS", Gitea)]
        }
        Some(ForgeKind::Github) => &[
            (".github/CODEOWNERS", Gitignore),
            ("CODEOWNERS", Gitignore),
            ("docs/CODEOWNERS", Gitignore),
        ],
        Some(ForgeKind::Gitlab) => &[
            ("CODEOWNERS", Gitignore),
            ("docs/CODEOWNERS", Gitignore),
            (".gitlab/CODEOWNERS", Gitignore),
        ],
        // Unknown (or a forge without CODEOWNERS): the gitignore syntax where most forges put
        // it, and Gitea's own directory last.
        _ => &[
            ("CODEOWNERS", Gitignore),
            (".github/CODEOWNERS", Gitignore),
            (".gitlab/CODEOWNERS", Gitignore),
            ("docs/CODEOWNERS", Gitignore),
            (".gitea/CODEOWNERS", Gitea),
        ],
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// GitHub and GitLab: gitignore-style patterns, the last match wins.
    Gitignore,
    /// Gitea and Forgejo: anchored regular expressions, every match counts.
    Gitea,
}

#[derive(Debug, Clone)]
pub struct CodeOwners {
    syntax: Syntax,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    owners: Vec<String>,
}

#[derive(Debug, Clone)]
enum Pattern {
    Glob(String),
    Regex { regex: Regex, negative: bool },
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match self {
            Pattern::Glob(glob) => matches(glob, path),
            Pattern::Regex { regex, negative } => regex.is_match(path) != *negative,
        }
    }
}

impl CodeOwners {
    pub fn parse(text: &str, syntax: Syntax) -> CodeOwners {
        let rules = match syntax {
            Syntax::Gitignore => text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                // GitLab sections: `[Section]`, `^[Optional]`, `[Section][2] @default`.
                .filter(|line| !line.starts_with('[') && !line.starts_with("^["))
                .filter_map(|line| {
                    let line = line.split(" #").next().unwrap_or(line);
                    let mut parts = line.split_whitespace();
                    let pattern = Pattern::Glob(parts.next()?.to_owned());
                    Some(Rule { pattern, owners: parts.map(str::to_owned).collect() })
                })
                .collect(),
            Syntax::Gitea => text.lines().filter_map(gitea_rule).collect(),
        };
        CodeOwners { syntax, rules }
    }

    /// The owners of `path` (relative to the repository root), empty when none. GitHub and
    /// GitLab: the last matching rule's (a matching rule with no owners means "no owner").
    /// Gitea: every matching rule's, each owner once.
    pub fn owners(&self, path: &str) -> Vec<&str> {
        let path = path.trim_start_matches("./").trim_start_matches('/');
        let mut matching = self.rules.iter().filter(|rule| rule.pattern.matches(path));
        match self.syntax {
            Syntax::Gitignore => matching
                .next_back()
                .map(|rule| rule.owners.iter().map(String::as_str).collect())
                .unwrap_or_default(),
            Syntax::Gitea => {
                let mut owners: Vec<&str> = Vec::new();
                for owner in matching.flat_map(|rule| &rule.owners) {
                    if !owners.contains(&owner.as_str()) {
                        owners.push(owner);
                    }
                }
                owners
            }
        }
    }
}

/// One Gitea line: tokens split on unescaped spaces, `#` ends the line, at least a pattern
/// and one owner, and a pattern that compiles.
fn gitea_rule(line: &str) -> Option<Rule> {
    let mut tokens = Vec::new();
    let mut token = String::new();
    let mut chars = line.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => token.extend(chars.next()),
            '#' => break,
            ' ' | '\t' => {
                if !token.is_empty() {
                    tokens.push(std::mem::take(&mut token));
                }
            }
            other => token.push(other),
        }
    }
    if !token.is_empty() {
        tokens.push(token);
    }
    if tokens.len() < 2 {
        return None;
    }
    let pattern = tokens.remove(0);
    let (negative, expression) = match pattern.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, pattern.as_str()),
    };
    // Bounded so a hostile CODEOWNERS cannot make a huge automaton.
    let regex = regex::RegexBuilder::new(&format!("^(?:{expression})$"))
        .size_limit(1 << 20)
        .build()
        .ok()?;
    Some(Rule { pattern: Pattern::Regex { regex, negative }, owners: tokens })
}

fn matches(pattern: &str, path: &str) -> bool {
    let directory = pattern.ends_with('/');
    let pattern = pattern.trim_end_matches('/');
    // As in gitignore, a `/` at the start or in the middle anchors the pattern at the root.
    let anchored = pattern.contains('/');
    let pattern_parts: Vec<&str> =
        pattern.trim_start_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let path_parts: Vec<&str> = path.split('/').collect();
    if pattern_parts.is_empty() {
        return false;
    }
    let starts = if anchored { 0..1 } else { 0..path_parts.len() };
    starts.into_iter().any(|start| {
        // The pattern matches the whole path, or a directory holding it (which owns
        // everything below); a directory pattern never matches the file itself.
        (start + 1..=path_parts.len()).any(|end| {
            !(directory && end == path_parts.len())
                && match_segments(&pattern_parts, &path_parts[start..end])
        })
    })
}

fn match_segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((segment, rest)) => match path.split_first() {
            Some((first, path_rest)) => glob(segment, first) && match_segments(rest, path_rest),
            None => false,
        },
    }
}

/// `*` and `?` within one path segment.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# Default owners
*                   @shop/platform
*.sql               @shop/dba
/services/cart/     @shop/payments @alice
docs/**/*.md        @shop/writers
/services/cart/vendor/
[Frontend]
web/                @shop/frontend # inline comment
";

    #[test]
    fn the_last_matching_rule_wins() {
        let owners = CodeOwners::parse(FILE, Syntax::Gitignore);
        let of = |path: &str| Some(owners.owners(path).join(" ")).filter(|o| !o.is_empty());
        assert_eq!(of("README.md").as_deref(), Some("@shop/platform"));
        assert_eq!(of("db/migrations/1.sql").as_deref(), Some("@shop/dba"));
        assert_eq!(of("services/cart/src/total.rs").as_deref(), Some("@shop/payments @alice"));
        assert_eq!(of("services/cart/schema.sql").as_deref(), Some("@shop/payments @alice"));
        assert_eq!(of("other/services/cart/x.rs").as_deref(), Some("@shop/platform"));
        assert_eq!(of("docs/api/guide/intro.md").as_deref(), Some("@shop/writers"));
        assert_eq!(of("services/cart/vendor/lib.rs"), None, "an ownerless rule unsets owners");
        assert_eq!(of("app/web/index.ts").as_deref(), Some("@shop/frontend"));
    }

    /// Gitea's documented example, plus its escapes.
    const GITEA_FILE: &str = "\
.*\\\\.go @user1 @user2 # This is comment

# Comment too
frontend/src/.*\\\\.js @org1/team1 @org1/team2 @user3
!frontend/src/.* @org1/team3 @user5
docs/(aws|google|azure)/[^/]*\\\\.(md|txt) @user8 @org1/team4
dir/with\\#hashtag @user1
path\\ with\\ space @user2
(unclosed @nobody
lonely-pattern
";

    #[test]
    fn gitea_rules_are_anchored_regular_expressions_and_all_matches_count() {
        let owners = CodeOwners::parse(GITEA_FILE, Syntax::Gitea);
        let of = |path: &str| owners.owners(path).join(" ");
        assert_eq!(of("main.go"), "@user1 @user2 @org1/team3 @user5");
        assert_eq!(of("frontend/src/app.js"), "@org1/team1 @org1/team2 @user3");
        assert_eq!(
            of("frontend/src/app.ts"),
            "",
            "only the negative rule could match, and not here"
        );
        assert_eq!(of("docs/aws/setup.md"), "@org1/team3 @user5 @user8 @org1/team4");
        assert_eq!(of("docs/aws/deep/setup.md"), "@org1/team3 @user5");
        assert_eq!(of("dir/with#hashtag"), "@org1/team3 @user5 @user1");
        assert_eq!(of("path with space"), "@org1/team3 @user5 @user2");
        assert_eq!(of("xmain.gox"), "@org1/team3 @user5", "anchored at both ends");
        assert_eq!(owners.rules.len(), 6, "a bad expression and a line without owners are skipped");
    }

    #[test]
    fn each_forge_looks_in_its_own_places() {
        let gitea = locations(Some(ForgeKind::Gitea));
        assert!(gitea.iter().all(|(_, syntax)| *syntax == Syntax::Gitea));
        assert_eq!(gitea.last().map(|(path, _)| *path), Some(".gitea/CODEOWNERS"));
        assert_eq!(locations(Some(ForgeKind::Github))[0].0, ".github/CODEOWNERS");
        assert_eq!(locations(None).last(), Some(&(".gitea/CODEOWNERS", Syntax::Gitea)));
    }

    #[test]
    fn globs_stay_within_a_segment() {
        assert!(glob("*.rs", "main.rs"));
        assert!(!glob("*.rs", "main.rsx"));
        assert!(glob("t?st*", "test_file"));
        assert!(!matches("/src/*.rs", "src/a/b.rs"));
        assert!(matches("/src/**/*.rs", "src/a/b.rs"));
        assert!(matches("src/*.rs", "src/b.rs"));
    }
}
