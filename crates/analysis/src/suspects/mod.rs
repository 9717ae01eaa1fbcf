//! Which commit of a deploy most likely caused a regression, with the evidence for it.
//!
//! Candidates are the commits of the deploy's range. Each earns points from evidence:
//! - **code paths**: the `code.*` location the slow spans ran (function, file, line) against
//!   the functions, files and hunks the commit changed; the regressed routes and span names
//!   against the changed text;
//! - **trace structure**: child spans that are new or multiplied after the deploy (N+1, a new
//!   downstream call, a new statement) against the code the commit added;
//! - **attributes** over-represented in slow spans after the deploy (feature flags first)
//!   against the code the commit added;
//! - **priors**: size, dependency and lockfile bumps, configuration files; formatting-only
//!   commits, documentation or test-only commits and `.git-blame-ignore-revs` entries count
//!   for less.
//!
//! Scores become probabilities by a softmax, so they say how sure the ranking is. When the
//! top suspect is not clearly ahead (under 50%, or under twice the second), the ranking says
//! so and proposes a bisect plan weighted by those probabilities instead of a guess.

use std::collections::BTreeSet;

/// A commit of the deploy's range, as the scorer reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidate {
    pub sha: String,
    pub subject: String,
    pub files: Vec<ChangedFile>,
    /// Listed in the repository's `.git-blame-ignore-revs`.
    pub ignored_for_blame: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangedFile {
    pub path: String,
    pub hunks: Vec<ChangedHunk>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangedHunk {
    pub new_start: u32,
    pub new_lines: u32,
    /// The function or section git names in the hunk header.
    pub section: String,
    /// The `-`/`+` lines, with their prefix.
    pub lines: Vec<String>,
    /// What the hunk changes, read from the syntax of the file at both revisions; `None` for
    /// a language that is not parsed (then the header and line rules above apply).
    pub syntax: Option<HunkSyntax>,
}

/// A hunk as its file's syntax tree reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct HunkSyntax {
    pub kind: ChangeKind,
    /// The functions whose code the hunk changes (empty for a change outside any function,
    /// or one that changes no code).
    pub functions: Vec<FunctionTouch>,
}

/// What a hunk changes, once comments, layout and moves are told apart from code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Code: the program's tokens differ.
    Code,
    /// Only string literals differ (a message, a query, a format).
    StringsOnly,
    /// Only import or use declarations.
    ImportsOnly,
    /// Only comments or docstrings (and layout).
    CommentsOnly,
    /// Only whitespace and layout.
    FormattingOnly,
    /// Functions moved, unchanged, within the commit.
    MovedOnly,
}

impl ChangeKind {
    /// Whether the program can behave differently after this change.
    pub fn changes_code(self) -> bool {
        matches!(self, ChangeKind::Code | ChangeKind::StringsOnly | ChangeKind::ImportsOnly)
    }

    fn words(self) -> &'static str {
        match self {
            ChangeKind::Code => "code",
            ChangeKind::StringsOnly => "string literals",
            ChangeKind::ImportsOnly => "imports",
            ChangeKind::CommentsOnly => "comments or docstrings",
            ChangeKind::FormattingOnly => "whitespace or formatting",
            ChangeKind::MovedOnly => "a move of unchanged code",
        }
    }
}

/// A function a hunk changes, and where in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionTouch {
    /// Its own name (`apply_promotions`, not the module or class).
    pub name: String,
    /// True when only its signature (the lines before its body) changed.
    pub signature_only: bool,
}

/// Where the slow spans after the deploy ran (from `code.function.name`, `code.file.path`,
/// `code.line.number` and their older names).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CodeLocation {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The share of slow spans that ran here (0..=1).
    pub share: f64,
}

/// A child span name whose count per parent changed across the deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildChange {
    pub name: String,
    pub before_per_parent: f64,
    pub after_per_parent: f64,
}

/// An attribute value more common among slow spans than fast ones after the deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeSkew {
    pub key: String,
    pub value: String,
    pub slow_share: f64,
    pub fast_share: f64,
}

/// What the regression looks like, gathered from exemplar spans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// Regressed operations (routes or span names).
    pub operations: Vec<String>,
    pub code_locations: Vec<CodeLocation>,
    pub child_changes: Vec<ChildChange>,
    pub slow_attributes: Vec<AttributeSkew>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Suspect {
    pub sha: String,
    /// The probability, by this ranking, that this commit caused the regression.
    pub score: f64,
    /// Why, strongest first.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BisectPlan {
    /// Build and canary the service at this commit first ...
    pub canary: String,
    /// ... if it is slow, the cause is among these (oldest first); otherwise among the rest.
    pub first_half: Vec<String>,
    /// Rounds of this at most, to one commit.
    pub max_rounds: u32,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// Highest score first.
    pub suspects: Vec<Suspect>,
    /// The top suspect is clearly ahead of the second.
    pub separated: bool,
    pub bisect: Option<BisectPlan>,
}

/// Points per factor e of odds: 2 points of evidence make a commit e times likelier.
const SOFTMAX_TEMPERATURE: f64 = 2.0;

/// Ranks `candidates` (the deploy's commits, oldest first) against `evidence`.
pub fn rank(candidates: &[Candidate], evidence: &Evidence) -> Ranking {
    let scored: Vec<(f64, Vec<(f64, String)>)> =
        candidates.iter().map(|c| score(c, evidence)).collect();
    let max = scored.iter().map(|(s, _)| *s).fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> =
        scored.iter().map(|(s, _)| ((s - max) / SOFTMAX_TEMPERATURE).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut suspects: Vec<Suspect> = candidates
        .iter()
        .zip(scored)
        .zip(&weights)
        .map(|((candidate, (_, mut reasons)), weight)| {
            reasons.sort_by(|a, b| b.0.total_cmp(&a.0));
            Suspect {
                sha: candidate.sha.clone(),
                score: weight / total,
                reasons: reasons.into_iter().map(|(_, reason)| reason).collect(),
            }
        })
        .collect();
    let probabilities: Vec<f64> = suspects.iter().map(|s| s.score).collect();
    // Stable: equal scores keep the deploy's order.
    suspects.sort_by(|a, b| b.score.total_cmp(&a.score));
    let separated = match suspects.as_slice() {
        [] => false,
        [_] => true,
        [first, second, ..] => first.score >= 0.5 && first.score >= 2.0 * second.score,
    };
    let bisect = (!separated && candidates.len() > 1).then(|| bisect(candidates, &probabilities));
    Ranking { suspects, separated, bisect }
}

/// Points and reasons for one commit.
fn score(candidate: &Candidate, evidence: &Evidence) -> (f64, Vec<(f64, String)>) {
    let mut reasons: Vec<(f64, String)> = Vec::new();
    // Words a commit adds count only where it changes code: a comment naming a table adds
    // no query.
    let added: Vec<&str> = candidate
        .files
        .iter()
        .flat_map(|f| &f.hunks)
        .filter(|h| changes_code(h))
        .flat_map(|h| &h.lines)
        .filter_map(|l| l.strip_prefix('+'))
        .collect();
    let added_words: BTreeSet<String> = added.iter().flat_map(|l| words(l)).collect();

    for location in &evidence.code_locations {
        code_location(candidate, location, &mut reasons);
    }
    for operation in &evidence.operations {
        let tokens: Vec<String> = words(operation).into_iter().filter(|t| t.len() >= 4).collect();
        let paths: BTreeSet<String> = candidate.files.iter().flat_map(|f| words(&f.path)).collect();
        if let Some(token) = tokens.iter().find(|t| added_words.contains(*t) || paths.contains(*t))
        {
            reasons.push((
                0.75,
                format!("touches `{token}`, part of the regressed operation `{operation}`"),
            ));
        }
    }
    for change in &evidence.child_changes {
        let tokens: Vec<String> = words(&change.name)
            .into_iter()
            .filter(|t| t.len() >= 3 && !STOPWORDS.contains(&t.as_str()))
            .collect();
        if let Some(token) = tokens.iter().find(|t| added_words.contains(*t)) {
            let what = if change.before_per_parent == 0.0 {
                format!(
                    "a new child span `{}` ({:.1} per call)",
                    change.name, change.after_per_parent
                )
            } else {
                format!(
                    "the child span `{}` going from {:.1} to {:.1} per call",
                    change.name, change.before_per_parent, change.after_per_parent
                )
            };
            reasons.push((2.5, format!("adds code naming `{token}`, which matches {what}")));
        }
    }
    for skew in &evidence.slow_attributes {
        let is_flag = skew.key.starts_with("feature_flag") || skew.key.contains("flag");
        let tokens: Vec<String> = words(&skew.value)
            .into_iter()
            .chain(if is_flag { words(&skew.key) } else { Vec::new() })
            .filter(|t| t.len() >= 4 && !STOPWORDS.contains(&t.as_str()))
            .collect();
        if let Some(token) = tokens.iter().find(|t| added_words.contains(*t)) {
            let points = if is_flag { 2.0 } else { 1.0 };
            reasons.push((
                points,
                format!(
                    "adds code naming `{token}`; `{}={}` is on {:.0}% of slow spans and {:.0}% of fast ones",
                    skew.key,
                    skew.value,
                    100.0 * skew.slow_share,
                    100.0 * skew.fast_share
                ),
            ));
        }
    }
    priors(candidate, &mut reasons);

    let evidence_points: f64 = reasons.iter().map(|(p, _)| *p).sum();
    let mut factor = 1.0;
    if candidate.ignored_for_blame {
        factor *= 0.2;
        reasons.push((-1.0, "listed in .git-blame-ignore-revs (mechanical change)".into()));
    }
    let parsed: Vec<&HunkSyntax> =
        candidate.files.iter().flat_map(|f| &f.hunks).filter_map(|h| h.syntax.as_ref()).collect();
    let all_hunks = candidate.files.iter().map(|f| f.hunks.len()).sum::<usize>();
    if is_formatting_only(candidate) {
        factor *= 0.25;
        reasons.push((-1.0, "changes only whitespace or formatting".into()));
    } else if !parsed.is_empty()
        && parsed.len() == all_hunks
        && parsed.iter().all(|s| !s.kind.changes_code())
    {
        factor *= 0.25;
        reasons
            .push((-1.0, "changes no code: only comments, docstrings, formatting or moves".into()));
    } else if candidate.files.iter().all(|f| is_docs_or_tests(&f.path))
        && !candidate.files.is_empty()
    {
        factor *= 0.3;
        reasons.push((-1.0, "changes only documentation or tests".into()));
    }
    (evidence_points * factor, reasons)
}

/// Points, with reasons, for one code location the slow spans ran.
fn code_location(candidate: &Candidate, location: &CodeLocation, reasons: &mut Vec<(f64, String)>) {
    let weight = 0.5 + location.share.clamp(0.0, 1.0);
    if let Some(function) = &location.function {
        let name = function.rsplit(['.', ':', '/', '\\']).next().unwrap_or(function);
        if name.len() >= 3 {
            let hunks = || candidate.files.iter().flat_map(|f| &f.hunks);
            let touch = function_touch(hunks(), name);
            let defined = touch == Touch::Body
                || (touch == Touch::Unparsed
                    && hunks().filter(|h| h.syntax.is_none()).any(|h| {
                        has_word(&h.section, name)
                            || h.lines.iter().any(|l| is_definition_of(&l[l.len().min(1)..], name))
                    }));
            let mentioned = !defined
                && touch != Touch::Signature
                && hunks()
                    .filter(|h| changes_code(h))
                    .flat_map(|h| &h.lines)
                    .any(|l| has_word(l, name));
            if let Touch::NoCode(kind) = touch {
                reasons.push((
                    0.0,
                    format!("changes only {} in `{function}`, the function the slow spans run: no credit for the code path", kind.words()),
                ));
            }
            if defined {
                reasons.push((
                    3.0 * weight,
                    format!(
                        "changes `{function}`, the function the slow spans run (code.function.name)"
                    ),
                ));
            } else if touch == Touch::Signature {
                reasons.push((
                    2.0 * weight,
                    format!(
                        "changes the signature of `{function}`, the function the slow spans run (its body is unchanged)"
                    ),
                ));
            } else if mentioned {
                reasons.push((
                    1.5 * weight,
                    format!("changes a call to `{function}`, which the slow spans run"),
                ));
            }
        }
    }
    if let Some(file) = &location.file {
        for changed in &candidate.files {
            let common = common_suffix_components(file, &changed.path);
            let file_name_only = !file.contains('/') && !file.contains('\\');
            if (common >= 2 || (common == 1 && file_name_only))
                && !changed.hunks.iter().any(changes_code)
            {
                reasons.push((
                    0.0,
                    format!(
                        "changes `{}`, the file the slow spans run, but no code in it",
                        changed.path
                    ),
                ));
                break;
            }
            if common >= 2 || (common == 1 && file_name_only) {
                reasons.push((
                    2.0 * weight,
                    format!(
                        "changes `{}`, the file the slow spans run (code.file.path)",
                        changed.path
                    ),
                ));
                if let Some(line) = location.line {
                    let hit = changed.hunks.iter().filter(|h| changes_code(h)).any(|h| {
                        let end = h.new_start + h.new_lines.max(1);
                        line + 3 >= h.new_start && line < end + 3
                    });
                    if hit {
                        reasons.push((
                            1.0 * weight,
                            format!("line {line} of `{}`, where the slow spans run, is in a changed hunk", changed.path),
                        ));
                    }
                }
                break;
            }
        }
    }
}

/// Whether a hunk may change what the program does: always, unless its syntax says it
/// changes only comments, layout or the place of unchanged code.
fn changes_code(hunk: &ChangedHunk) -> bool {
    hunk.syntax.as_ref().is_none_or(|s| s.kind.changes_code())
}

/// How a commit's parsed hunks touch a function, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touch {
    /// Its body's code changed.
    Body,
    /// Only its signature's code changed.
    Signature,
    /// Hunks inside it change no code (the kind of the first).
    NoCode(ChangeKind),
    /// No parsed hunk names it (unparsed hunks may: the line rules decide).
    Unparsed,
}

fn function_touch<'a>(hunks: impl Iterator<Item = &'a ChangedHunk>, name: &str) -> Touch {
    let mut touch = Touch::Unparsed;
    for syntax in hunks.filter_map(|h| h.syntax.as_ref()) {
        for f in syntax.functions.iter().filter(|f| f.name == name) {
            let this = match (syntax.kind.changes_code(), f.signature_only) {
                (true, false) => Touch::Body,
                (true, true) => Touch::Signature,
                (false, _) => Touch::NoCode(syntax.kind),
            };
            touch = match (touch, this) {
                (Touch::Body, _) | (_, Touch::Body) => Touch::Body,
                (Touch::Signature, _) | (_, Touch::Signature) => Touch::Signature,
                (Touch::NoCode(kind), _) | (_, Touch::NoCode(kind)) => Touch::NoCode(kind),
                _ => Touch::Unparsed,
            };
        }
    }
    touch
}

/// Size, dependency bumps and configuration files.
fn priors(candidate: &Candidate, reasons: &mut Vec<(f64, String)>) {
    let changed_lines: usize =
        candidate.files.iter().flat_map(|f| &f.hunks).map(|h| h.lines.len()).sum();
    if changed_lines > 0 {
        reasons.push((
            0.15 * (1.0 + changed_lines as f64).ln(),
            format!(
                "changes {changed_lines} line{} in {} file{}",
                if changed_lines == 1 { "" } else { "s" },
                candidate.files.len(),
                if candidate.files.len() == 1 { "" } else { "s" }
            ),
        ));
    }
    if let Some(lockfile) = candidate.files.iter().find(|f| is_dependency_file(&f.path)) {
        reasons.push((0.6, format!("bumps dependencies (`{}`)", lockfile.path)));
    }
    if let Some(config) = candidate.files.iter().find(|f| is_config_file(&f.path)) {
        reasons.push((0.4, format!("changes configuration (`{}`)", config.path)));
    }
}

/// The bisect plan: canary the commit where the cumulative suspicion (oldest first) passes
/// one half.
fn bisect(candidates: &[Candidate], probabilities: &[f64]) -> BisectPlan {
    let mut cumulative = 0.0;
    let mut split = candidates.len() - 1;
    for (i, p) in probabilities.iter().enumerate() {
        cumulative += p;
        if cumulative >= 0.5 {
            split = i;
            break;
        }
    }
    // The canary must leave commits on both sides.
    let split = split.min(candidates.len() - 2);
    let first_half: Vec<String> = candidates[..=split].iter().map(|c| c.sha.clone()).collect();
    let canary = candidates[split].sha.clone();
    let max_rounds = (candidates.len() as f64).log2().ceil() as u32;
    let share: f64 = probabilities[..=split].iter().sum();
    let text = format!(
        "No commit is clearly ahead. Deploy {} (the first {} of {} commits, {:.0}% of the suspicion) to a canary: if it is slow, the cause is among those {}; otherwise among the other {}. At most {} rounds like this name one commit.",
        short(&canary),
        first_half.len(),
        candidates.len(),
        100.0 * share,
        first_half.len(),
        candidates.len() - first_half.len(),
        max_rounds
    );
    BisectPlan { canary, first_half, max_rounds, text }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// Words too common in span names and code to tell commits apart.
const STOPWORDS: &[&str] = &[
    "get", "post", "put", "delete", "patch", "http", "https", "select", "insert", "update", "from",
    "where", "into", "values", "and", "the", "for", "with", "set", "true", "false", "span", "call",
    "client", "server", "api", "let", "mut", "var", "const", "return", "self", "this", "new",
];

/// Lower-cased identifier-like words of `text`, whole and split at `_` and camelCase
/// (`fetchInventory_v2` gives `fetchinventory_v2`, `fetch`, `inventory`, `v2`).
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        if word.is_empty() || word.chars().all(|c| c.is_ascii_digit() || c == '_') {
            continue;
        }
        out.push(word.to_lowercase());
        let mut part = String::new();
        let mut previous_lower = false;
        for c in word.chars() {
            if (c == '_' || (c.is_uppercase() && previous_lower)) && !part.is_empty() {
                out.push(std::mem::take(&mut part).to_lowercase());
            }
            if c != '_' {
                part.push(c);
            }
            previous_lower = c.is_lowercase() || c.is_ascii_digit();
        }
        if !part.is_empty() && part.len() < word.len() {
            out.push(part.to_lowercase());
        }
    }
    out
}

fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        boundary(before) && boundary(after)
    })
}

/// Does `line` define `name` (`fn name`, `def name`, `func name`, `function name`, ...)?
fn is_definition_of(line: &str, name: &str) -> bool {
    const KEYWORDS: &[&str] = &["fn", "def", "func", "function", "sub", "method"];
    let tokens: Vec<&str> = line
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|t| !t.is_empty())
        .collect();
    tokens.windows(2).any(|w| KEYWORDS.contains(&w[0]) && w[1] == name)
        || (tokens.contains(&name)
            && line.contains(&format!("{name}("))
            && line.trim_end().ends_with('{'))
}

/// How many trailing path components two paths share (`src/cart/price.rs` and
/// `cart/price.rs`: 2).
fn common_suffix_components(a: &str, b: &str) -> usize {
    let split = |p: &str| -> Vec<String> {
        p.split(['/', '\\']).filter(|c| !c.is_empty() && *c != ".").map(str::to_owned).collect()
    };
    split(a).iter().rev().zip(split(b).iter().rev()).take_while(|(x, y)| x == y).count()
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn is_dependency_file(path: &str) -> bool {
    const NAMES: &[&str] = &[
        "Cargo.lock",
        "Cargo.toml",
        "package-lock.json",
        "package.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "go.mod",
        "go.sum",
        "Gemfile.lock",
        "poetry.lock",
        "requirements.txt",
        "Pipfile.lock",
        "pom.xml",
        "build.gradle",
        "composer.lock",
    ];
    NAMES.contains(&file_name(path))
}

fn is_config_file(path: &str) -> bool {
    let name = file_name(path);
    const EXTENSIONS: &[&str] =
        &[".yaml", ".yml", ".toml", ".ini", ".conf", ".cfg", ".env", ".tf", ".properties"];
    !is_dependency_file(path)
        && (EXTENSIONS.iter().any(|e| name.ends_with(e)) || name == "Dockerfile")
}

fn is_docs_or_tests(path: &str) -> bool {
    let name = file_name(path);
    name.ends_with(".md")
        || name.ends_with(".rst")
        || name.ends_with(".txt") && !is_dependency_file(path)
        || path.starts_with("docs/")
        || path.split('/').any(|c| c == "tests" || c == "test" || c == "__tests__")
        || name.contains("_test.")
        || name.contains(".test.")
        || name.starts_with("test_")
}

/// Every hunk removes and adds the same text once whitespace is ignored.
fn is_formatting_only(candidate: &Candidate) -> bool {
    let hunks: Vec<&ChangedHunk> = candidate.files.iter().flat_map(|f| &f.hunks).collect();
    if hunks.is_empty() {
        return false;
    }
    let squash = |prefix: char| -> String {
        hunks
            .iter()
            .flat_map(|h| &h.lines)
            .filter_map(|l| l.strip_prefix(prefix))
            .flat_map(|l| l.chars())
            .filter(|c| !c.is_whitespace())
            .collect()
    };
    squash('-') == squash('+')
}

#[cfg(test)]
mod tests;
