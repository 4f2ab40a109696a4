//! The build context: the repo root as a tar, less what `.dockerignore`
//! excludes, with the semantics of the docker CLI (moby's patternmatcher):
//!
//! - a pattern is relative to the context root: it is cleaned like Go's
//!   `filepath.Clean` and a leading `/` is dropped, so `/target`, `./target`
//!   and `target/` all mean the root's `target`, and only that one;
//! - the glob is Go's `filepath.Match` plus `**`: `*` and `?` stop at `/`,
//!   `[a-z]` and `[^a]` are classes, `\` escapes, `**/` is any number of
//!   directories (none included) and a trailing `**` is anything;
//! - a pattern matches a path when it matches the path or one of its parent
//!   directories, so excluding a folder excludes everything under it;
//! - `!` makes an exception, and the last pattern that matches decides;
//! - an excluded folder is still entered when an exception names a path
//!   under it (`!client/tests/keep.js`), as the CLI does; an exception with a
//!   wildcard before that folder's name does not reach into it, there either;
//! - the Dockerfile and `.dockerignore` are always sent (the daemon removes
//!   them again when they are excluded).
//!
//! No crate implements these semantics (the `ignore` crate is gitignore's,
//! where `target` matches at any depth), hence this small matcher; its tests
//! are the cases of Docker's documentation.
//!
//! The tar is made for the classic builder: symlinks are stored, never
//! followed; no sparse entries (it cannot read GNU sparse headers); owner
//! 0:0 as the CLI sends; entries in byte order of their names, so the same
//! tree gives the same bytes. Modification times are kept as they are: the
//! builder's cache ignores them, and the tests image runs cargo over the
//! copied sources, whose freshness check compares them.

use std::fmt;
use std::io;
use std::path::Path;

/// A `.dockerignore` that cannot be used, with the line at fault.
#[derive(Debug, thiserror::Error)]
#[error(".dockerignore line {line} `{text}`: {reason}")]
pub struct PatternError {
    pub line: usize,
    pub text: String,
    pub reason: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("cannot read the build context at {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

/// The patterns of a `.dockerignore`, applied the way Docker applies them.
#[derive(Clone, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
}

#[derive(Clone)]
struct Rule {
    exception: bool,
    /// The cleaned pattern, without its `!`.
    pattern: String,
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Literal(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    Question,
    /// `[...]`; as in moby's translation to a regexp, a class may match `/`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**` followed by more pattern: any number of whole directories.
    AnyDirectories,
    /// A trailing `**`: anything at all.
    AnyRest,
}

impl fmt::Debug for Ignore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let patterns: Vec<String> =
            self.rules.iter().map(|r| format!("{}{}", if r.exception { "!" } else { "" }, r.pattern)).collect();
        f.debug_tuple("Ignore").field(&patterns).finish()
    }
}

impl Ignore {
    /// Parses the text of a `.dockerignore` as the CLI reads it: a line
    /// whose first character is `#` is a comment, other lines are trimmed,
    /// blank ones skipped.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            // As in moby: the comment test comes before trimming.
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let error = |reason| PatternError { line: i + 1, text: line.to_owned(), reason };
            let (exception, rest) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if rest.is_empty() {
                return Err(error("an exception (`!`) needs a pattern"));
            }
            let pattern = clean(rest);
            let tokens = compile(&pattern).map_err(error)?;
            rules.push(Rule { exception, pattern, tokens });
        }
        Ok(Ignore { rules })
    }

    /// Reads `ROOT/.dockerignore`; none is no exclusion.
    pub fn read(root: &Path) -> Result<Self, ContextError> {
        let path = root.join(".dockerignore");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Ignore::parse(&text)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ignore::default()),
            Err(source) => Err(ContextError::Read { path: path.display().to_string(), source }),
        }
    }

    /// Whether `path` (relative to the context root, `/`-separated) is left
    /// out of the context.
    pub fn excludes(&self, path: &str) -> bool {
        let path = path.trim_matches('/');
        let mut excluded = false;
        for rule in &self.rules {
            // A rule can only change the outcome when it goes the other way.
            if rule.exception != excluded {
                continue;
            }
            if rule.matches_or_parent_matches(path) {
                excluded = !rule.exception;
            }
        }
        excluded
    }

    /// Keeps `path` in whatever the patterns say, as the CLI keeps the
    /// Dockerfile and `.dockerignore`: an exception appended when excluded.
    fn keep(&mut self, path: &str) {
        if self.excludes(path) {
            let pattern = clean(path);
            let tokens = pattern.chars().map(Token::Literal).collect();
            self.rules.push(Rule { exception: true, pattern, tokens });
        }
    }

    /// Whether an excluded directory must still be walked because an
    /// exception names something under it (the CLI's test, a prefix).
    fn may_reinclude_under(&self, dir: &str) -> bool {
        let dir_slash = format!("{dir}/");
        self.rules.iter().any(|r| r.exception && format!("{}/", r.pattern).starts_with(&dir_slash))
    }
}

impl Rule {
    fn matches_or_parent_matches(&self, path: &str) -> bool {
        if matches(&self.tokens, &path.chars().collect::<Vec<_>>()) {
            return true;
        }
        // Each parent directory, shortest first.
        path.match_indices('/').any(|(i, _)| matches(&self.tokens, &path[..i].chars().collect::<Vec<_>>()))
    }
}

/// Go's `filepath.Clean` on a `/`-separated path, then no leading `/`.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        // `/` and `.` match nothing a context holds.
        return if rooted { "/".to_owned() } else { ".".to_owned() };
    }
    parts.join("/")
}

/// The pattern as tokens, refusing what Go's `filepath.Match` calls a bad
/// pattern (moby checks every pattern with it).
fn compile(pattern: &str) -> Result<Vec<Token>, &'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                // `**/` is `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i == chars.len() { Token::AnyRest } else { Token::AnyDirectories });
                continue;
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::Question),
            '\\' => {
                i += 1;
                let c = *chars.get(i).ok_or("a `\\` at the end escapes nothing")?;
                tokens.push(Token::Literal(c));
            }
            '[' => {
                let (token, next) = class(&chars, i + 1)?;
                tokens.push(token);
                i = next;
                continue;
            }
            c => tokens.push(Token::Literal(c)),
        }
        i += 1;
    }
    Ok(tokens)
}

/// A character class starting after its `[`; returns it and the index
/// after its `]`.
fn class(chars: &[char], mut i: usize) -> Result<(Token, usize), &'static str> {
    const UNTERMINATED: &str = "a `[` without its `]`";
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let one = |i: &mut usize| -> Result<char, &'static str> {
        let c = *chars.get(*i).ok_or(UNTERMINATED)?;
        *i += 1;
        match c {
            '\\' => {
                let escaped = *chars.get(*i).ok_or(UNTERMINATED)?;
                *i += 1;
                Ok(escaped)
            }
            '-' | ']' => Err("a class with a `-` or `]` out of place (escape it with `\\`)"),
            c => Ok(c),
        }
    };
    loop {
        match chars.get(i) {
            None => return Err(UNTERMINATED),
            Some(']') if !ranges.is_empty() => return Ok((Token::Class { negated, ranges }, i + 1)),
            Some(_) => {
                let low = one(&mut i)?;
                let high = if chars.get(i) == Some(&'-') {
                    i += 1;
                    one(&mut i)?
                } else {
                    low
                };
                if low > high {
                    return Err("a class range that runs backwards");
                }
                ranges.push((low, high));
            }
        }
    }
}

/// Whether `tokens` match all of `s`; backtracking, fine for short paths.
fn matches(tokens: &[Token], s: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return s.is_empty();
    };
    match first {
        Token::Literal(c) => s.first() == Some(c) && matches(rest, &s[1..]),
        Token::Question => s.first().is_some_and(|c| *c != '/') && matches(rest, &s[1..]),
        Token::Class { negated, ranges } => {
            s.first().is_some_and(|c| ranges.iter().any(|(low, high)| (low..=high).contains(&c)) != *negated)
                && matches(rest, &s[1..])
        }
        Token::Star => {
            let run = s.iter().take_while(|c| **c != '/').count();
            (0..=run).any(|k| matches(rest, &s[k..]))
        }
        Token::AnyDirectories => {
            matches(rest, s) || s.iter().enumerate().any(|(k, c)| *c == '/' && matches(rest, &s[k + 1..]))
        }
        Token::AnyRest => true,
    }
}

/// The context of a build from `root` with `dockerfile` (a path relative to
/// `root`), as tar bytes.
pub fn tar(root: &Path, dockerfile: &str) -> Result<Vec<u8>, ContextError> {
    let mut ignore = Ignore::read(root)?;
    ignore.keep(".dockerignore");
    ignore.keep(dockerfile);
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.sparse(false);
    walk(root, "", &ignore, &mut builder)?;
    builder.into_inner().map_err(|source| ContextError::Read { path: root.display().to_string(), source })
}

fn walk(root: &Path, dir: &str, ignore: &Ignore, tar: &mut tar::Builder<Vec<u8>>) -> Result<(), ContextError> {
    let folder = root.join(dir);
    let read = |source| ContextError::Read { path: folder.display().to_string(), source };
    let mut entries: Vec<_> = std::fs::read_dir(&folder).map_err(read)?.collect::<Result<_, _>>().map_err(read)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            // Docker's paths are UTF-8; a name that is not cannot be matched.
            return Err(ContextError::Read {
                path: entry.path().display().to_string(),
                source: io::Error::new(io::ErrorKind::InvalidData, "a file name that is not UTF-8"),
            });
        };
        let rel = if dir.is_empty() { name } else { format!("{dir}/{name}") };
        let path = entry.path();
        let error = |source| ContextError::Read { path: path.display().to_string(), source };
        let meta = std::fs::symlink_metadata(&path).map_err(error)?;
        let file_type = meta.file_type();
        if ignore.excludes(&rel) {
            if file_type.is_dir() && ignore.may_reinclude_under(&rel) {
                walk(root, &rel, ignore, tar)?;
            }
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        header.set_mode(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777);
        header.set_uid(0);
        header.set_gid(0);
        if file_type.is_dir() {
            tar.append_data(&mut header, format!("{rel}/"), io::empty()).map_err(error)?;
            walk(root, &rel, ignore, tar)?;
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&path).map_err(error)?;
            tar.append_link(&mut header, &rel, target).map_err(error)?;
        } else if file_type.is_file() {
            // Read whole, so the size in the header is the size sent even
            // if the file changes meanwhile.
            let content = std::fs::read(&path).map_err(error)?;
            header.set_size(content.len() as u64);
            tar.append_data(&mut header, &rel, content.as_slice()).map_err(error)?;
        }
        // Sockets, fifos and devices have no place in an image.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    // The examples of Docker's documentation of .dockerignore.

    #[test]
    fn a_star_stops_at_a_slash() {
        let i = ignore("*/temp*");
        assert!(i.excludes("somedir/temporary.txt"));
        assert!(i.excludes("somedir/temp"));
        assert!(!i.excludes("temp"));
        assert!(!i.excludes("somedir/subdir/temporary.txt"));
    }

    #[test]
    fn two_stars_with_slashes_are_two_levels() {
        let i = ignore("*/*/temp*");
        assert!(i.excludes("somedir/subdir/temporary.txt"));
        assert!(!i.excludes("somedir/temporary.txt"));
    }

    #[test]
    fn a_question_mark_is_one_character() {
        let i = ignore("temp?");
        assert!(i.excludes("tempa") && i.excludes("tempb"));
        assert!(!i.excludes("temp") && !i.excludes("tempab"));
    }

    #[test]
    fn double_star_matches_any_number_of_directories() {
        let i = ignore("**/*.go");
        assert!(i.excludes("main.go"));
        assert!(i.excludes("a/b/c/main.go"));
        assert!(!i.excludes("a/main.rs"));
    }

    #[test]
    fn an_exception_brings_a_file_back() {
        let i = ignore("*.md\n!README.md");
        assert!(i.excludes("CHANGES.md"));
        assert!(!i.excludes("README.md"));
    }

    #[test]
    fn the_last_matching_line_wins() {
        let i = ignore("*.md\n!README*.md\nREADME-secret.md");
        assert!(i.excludes("CHANGES.md"));
        assert!(!i.excludes("README-public.md"));
        assert!(i.excludes("README-secret.md"));

        let i = ignore("*.md\nREADME-secret.md\n!README*.md");
        assert!(!i.excludes("README-secret.md"));
        assert!(!i.excludes("README.md"));
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let i = ignore("# comment\n\n   \n*.tmp\n");
        assert!(i.excludes("a.tmp"));
        assert!(!i.excludes("# comment"));
        // As in moby: only a `#` in the first column starts a comment.
        assert!(ignore("  #x").excludes("#x"));
    }

    // What the project relies on.

    #[test]
    fn a_plain_name_is_relative_to_the_root_only() {
        let i = ignore("target");
        assert!(i.excludes("target"));
        assert!(i.excludes("target/debug/harness"));
        assert!(!i.excludes("service/target"));
        assert!(!i.excludes("targets"));
    }

    #[test]
    fn leading_and_trailing_slashes_and_dots_are_cleaned() {
        for pattern in ["/target", "./target", "target/", "target//", "x/../target"] {
            let i = ignore(pattern);
            assert!(i.excludes("target/a"), "{pattern}");
            assert!(!i.excludes("a/target"), "{pattern}");
        }
    }

    #[test]
    fn excluding_a_folder_excludes_what_it_holds() {
        let i = ignore("client/tests");
        assert!(i.excludes("client/tests"));
        assert!(i.excludes("client/tests/run.sh"));
        assert!(i.excludes("client/tests/node_modules/a/b.js"));
        assert!(!i.excludes("client/app.js"));
        assert!(!i.excludes("client/tests2"));
    }

    #[test]
    fn a_leading_double_star_matches_at_the_root_and_below() {
        let i = ignore("**/node_modules");
        assert!(i.excludes("node_modules"));
        assert!(i.excludes("node_modules/x.js"));
        assert!(i.excludes("client/tests/node_modules/x.js"));
        assert!(!i.excludes("client/node_modules_list"));
    }

    #[test]
    fn a_double_star_in_the_middle_may_match_no_directory() {
        let i = ignore("a/**/b");
        assert!(i.excludes("a/b"));
        assert!(i.excludes("a/x/y/b"));
        assert!(!i.excludes("a/xb"));
        assert!(ignore("a/**").excludes("a/x/y"));
    }

    #[test]
    fn an_exception_inside_an_excluded_folder_reincludes_that_path() {
        let i = ignore("client/tests\n!client/tests/keep");
        assert!(i.excludes("client/tests/run.sh"));
        assert!(!i.excludes("client/tests/keep"));
        assert!(!i.excludes("client/tests/keep/a.js"));
        assert!(i.may_reinclude_under("client/tests"));
        assert!(i.may_reinclude_under("client"));
        assert!(!i.may_reinclude_under("service"));
    }

    #[test]
    fn classes_ranges_negation_and_escapes() {
        let i = ignore("file[0-9].txt\nx[^a]y\nliteral\\*star\n[!]bang");
        assert!(i.excludes("file7.txt") && !i.excludes("filex.txt"));
        assert!(i.excludes("xby") && !i.excludes("xay"));
        assert!(i.excludes("literal*star") && !i.excludes("literalXstar"));
        // `!` inside a class is a member, not a negation (Go's syntax).
        assert!(i.excludes("!bang"));
    }

    #[test]
    fn bad_patterns_are_refused_with_their_line() {
        for (text, line) in [("ok\n!", 2), ("[abc", 1), ("a\nb\n[z-a]", 3), ("end\\", 1), ("[]a]", 1)] {
            let err = Ignore::parse(text).err().unwrap_or_else(|| panic!("{text:?} parsed"));
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
    }

    #[test]
    fn the_dockerfile_and_dockerignore_are_kept_even_when_excluded() {
        let mut i = ignore("*\n");
        i.keep(".dockerignore");
        i.keep("Dockerfile.test");
        assert!(!i.excludes(".dockerignore") && !i.excludes("Dockerfile.test"));
        assert!(i.excludes("Dockerfile"));
    }

    // The tar.

    fn names(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                assert!(!e.header().entry_type().is_gnu_sparse(), "a sparse entry");
                assert_eq!((e.header().uid().unwrap(), e.header().gid().unwrap()), (0, 0));
                e.path().unwrap().display().to_string()
            })
            .collect()
    }

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, file.as_bytes()).unwrap();
        }
        dir
    }

    #[test]
    fn the_tar_holds_what_is_not_ignored_in_name_order() {
        let dir = tree(&[
            ".dockerignore",
            "Dockerfile",
            "b.txt",
            "a/z.txt",
            "a/b.txt",
            "target/debug/x",
            "service/target/kept",
            "client/tests/run.sh",
            "client/tests/keep.js",
            "client/app.js",
        ]);
        std::fs::write(
            dir.path().join(".dockerignore"),
            "target\nclient/tests\n!client/tests/keep.js\n.dockerignore\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();

        let bytes = tar(dir.path(), "Dockerfile").unwrap();

        assert_eq!(
            names(&bytes),
            [
                ".dockerignore",
                "Dockerfile",
                "a/",
                "a/b.txt",
                "a/z.txt",
                "b.txt",
                "client/",
                "client/app.js",
                "client/tests/keep.js",
                "link",
                "service/",
                "service/target/",
                "service/target/kept",
            ]
        );
        // The symlink is stored as one, not followed.
        let mut archive = tar::Archive::new(bytes.as_slice());
        let link =
            archive.entries().unwrap().map(Result::unwrap).find(|e| e.path().unwrap().ends_with("link")).unwrap();
        assert!(link.header().entry_type().is_symlink());
        assert_eq!(link.link_name().unwrap().unwrap().display().to_string(), "/etc/passwd");
        // Twice the same tree, twice the same bytes.
        assert_eq!(bytes, tar(dir.path(), "Dockerfile").unwrap());
    }

    #[test]
    fn long_names_survive() {
        let long = format!("{}/file.txt", "d".repeat(120));
        let dir = tree(&[&long]);
        assert!(names(&tar(dir.path(), "Dockerfile").unwrap()).contains(&long));
    }

    #[test]
    fn a_bad_dockerignore_is_an_error_naming_the_line() {
        let dir = tree(&[".dockerignore"]);
        std::fs::write(dir.path().join(".dockerignore"), "ok\n[oops\n").unwrap();
        let err = tar(dir.path(), "Dockerfile").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("[oops"), "{err}");
    }
}
