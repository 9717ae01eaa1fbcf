//! CODEOWNERS in the GitHub and GitLab syntax: `pattern owner...` lines, `#` comments,
//! GitLab `[Section]` headers, and the last matching pattern wins. Patterns follow gitignore
//! rules: a leading `/` anchors at the repository root, a trailing `/` matches everything
//! below a directory, `*` stays within a path segment, `**` crosses segments, and a pattern
//! with no inner `/` matches at any depth.
//!
//! Gitea's CODEOWNERS uses regular expressions instead; it is not read here.

/// Where CODEOWNERS may live, in the order forges look.
pub(crate) const LOCATIONS: &[&str] =
    &["CODEOWNERS", ".github/CODEOWNERS", ".gitlab/CODEOWNERS", "docs/CODEOWNERS"];

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodeOwners {
    rules: Vec<(String, Vec<String>)>,
}

impl CodeOwners {
    pub fn parse(text: &str) -> CodeOwners {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            // GitLab sections: `[Section]`, `^[Optional]`, `[Section][2] @default`.
            .filter(|line| !line.starts_with('[') && !line.starts_with("^["))
            .filter_map(|line| {
                let line = line.split(" #").next().unwrap_or(line);
                let mut parts = line.split_whitespace();
                let pattern = parts.next()?.to_owned();
                Some((pattern, parts.map(str::to_owned).collect()))
            })
            .collect();
        CodeOwners { rules }
    }

    /// The owners of `path` (relative to the repository root): the last matching rule's.
    /// A matching rule with no owners means "no owner".
    pub fn owners(&self, path: &str) -> Option<&[String]> {
        let path = path.trim_start_matches("./").trim_start_matches('/');
        self.rules
            .iter()
            .rev()
            .find(|(pattern, _)| matches(pattern, path))
            .map(|(_, owners)| owners.as_slice())
            .filter(|owners| !owners.is_empty())
    }
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
        let owners = CodeOwners::parse(FILE);
        let of = |path: &str| owners.owners(path).map(|o| o.join(" "));
        assert_eq!(of("README.md").as_deref(), Some("@shop/platform"));
        assert_eq!(of("db/migrations/1.sql").as_deref(), Some("@shop/dba"));
        assert_eq!(of("services/cart/src/total.rs").as_deref(), Some("@shop/payments @alice"));
        assert_eq!(of("services/cart/schema.sql").as_deref(), Some("@shop/payments @alice"));
        assert_eq!(of("other/services/cart/x.rs").as_deref(), Some("@shop/platform"));
        assert_eq!(of("docs/api/guide/intro.md").as_deref(), Some("@shop/writers"));
        assert_eq!(of("services/cart/vendor/lib.rs"), None, "an ownerless rule unsets owners");
        assert_eq!(of("app/web/index.ts").as_deref(), Some("@shop/frontend"));
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
