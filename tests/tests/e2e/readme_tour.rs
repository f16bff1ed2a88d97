//! README.md's "A short tour with `vaultctl`", run as written.
//!
//! The test reads README.md when it runs, takes every ```sh block from the section "A short
//! tour with `vaultctl`" up to "## The API", and runs the commands in order with the
//! `vaultctl` under test, against a real daemon on 127.0.0.1:0 whose data directory is
//! `./vault-data` of a temporary working directory (the quick start's zero configuration;
//! only the port differs, given in `VAULT_ADDR`). A README command that the code no longer
//! accepts, or whose output no longer has the shape shown under it, fails the test with its
//! README line number.
//!
//! How the README is read (the same rules are stated in docs/cli.md, "The tour's
//! conventions"):
//!
//! - A command runs in `bash` with `vaultctl` standing for the binary under test (the
//!   `alias vaultctl=...` line is skipped); a line ending in `\` continues on the next.
//!   `export NAME=VALUE` sets the variable for the commands after it.
//! - Comment lines *directly* under a command (no blank line between) show its output, one
//!   comment line per output line; a comment after a blank line describes what follows and
//!   is not checked. An expectation starting with `vaultctl: ` means the command fails with
//!   that line on stderr. One starting with `{` or `[` is JSON: the same keys (`,…` allows
//!   more keys or elements, a value `…` is anything), the same strings, booleans and nulls,
//!   numbers of any value. Any other line is text, where `…` matches anything. A last line
//!   `# …` allows more output lines; without it, the output has exactly the lines shown.
//! - Values the README cannot know are placeholders. `P…` (letters, digits, `_` or `-`
//!   right before `…`) is the value that an expectation earlier showed as `P…`, or as a
//!   full example value starting with `P`: a JSON string `"9b1d…"` under one command binds
//!   `9b1d…` in later commands to the real string at that place, and an example id
//!   (`"1115219a-78db-…"`, a UUID) binds the same way and must then be the same real id
//!   wherever it appears again. `vault_…` is the last token any command printed, and
//!   `<NAME's token>` the token printed by the command that created client NAME.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use vault_tests::{Daemon, VAULTCTL};

/// The repository's README, read at test time.
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
/// The tour's first heading, and the heading that ends it.
const TOUR_START: &str = "## A short tour with `vaultctl`";
const TOUR_END: &str = "## The API";
/// The files the tour uses, copied into the working directory at the same place.
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples");

/// One command of the tour, with the output lines shown under it.
#[derive(Debug, Clone)]
struct Step {
    /// README line of the command's first line.
    line: usize,
    command: String,
    /// (README line, text after `# `) of each comment line right under the command.
    expected: Vec<(usize, String)>,
}

/// The tour's commands, in order.
fn steps(readme: &str) -> Result<Vec<Step>, String> {
    let lines: Vec<&str> = readme.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == TOUR_START)
        .ok_or(format!("README.md has no section {TOUR_START:?}"))?;
    let end = lines[start..]
        .iter()
        .position(|l| l.trim_end() == TOUR_END)
        .map(|i| start + i)
        .ok_or(format!("README.md has no {TOUR_END:?} after the tour"))?;
    let mut steps: Vec<Step> = Vec::new();
    let mut in_block = false;
    // Whether comment lines now belong to the last command (no blank line since).
    let mut under_command = false;
    let mut i = start;
    while i < end {
        let number = i + 1;
        let text = lines[i];
        i += 1;
        if !in_block {
            in_block = text.trim_end() == "```sh";
            under_command = false;
            continue;
        }
        if text.trim_end() == "```" {
            in_block = false;
            continue;
        }
        let trimmed = text.trim();
        if trimmed.is_empty() {
            under_command = false;
        } else if let Some(comment) = trimmed.strip_prefix('#') {
            if under_command && let Some(step) = steps.last_mut() {
                step.expected.push((
                    number,
                    comment.strip_prefix(' ').unwrap_or(comment).to_owned(),
                ));
            }
        } else {
            let mut command = trimmed.to_owned();
            while command.ends_with('\\') && i < end {
                command.pop();
                command.push(' ');
                command.push_str(lines[i].trim());
                i += 1;
            }
            steps.push(Step {
                line: number,
                command,
                expected: Vec::new(),
            });
            under_command = true;
        }
    }
    if in_block {
        return Err("README.md: a ```sh block of the tour is not closed".into());
    }
    if steps.is_empty() {
        return Err("README.md: the tour has no commands".into());
    }
    Ok(steps)
}

/// What earlier commands printed, for the placeholders of later ones.
#[derive(Default)]
struct Bindings {
    /// (example value or prefix as the README shows it, real value), newest last.
    values: Vec<(String, String)>,
    /// The last token any command printed.
    last_token: Option<String>,
    /// Tokens by the client name they were created for.
    tokens: BTreeMap<String, String>,
}

impl Bindings {
    /// The real value of the placeholder `prefix…`.
    fn resolve(&self, prefix: &str) -> Option<String> {
        if prefix.starts_with("vault_") {
            return self.last_token.clone();
        }
        self.values
            .iter()
            .rev()
            .find(|(shown, _)| shown.starts_with(prefix))
            .map(|(_, real)| real.clone())
    }

    /// `text` with every placeholder replaced by its real value.
    fn substitute(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('…') {
            let before = &rest[..at];
            let word_start = before
                .char_indices()
                .rev()
                .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .last()
                .map_or(at, |(i, _)| i);
            let prefix = &before[word_start..];
            out.push_str(&before[..word_start]);
            if prefix.is_empty() {
                out.push('…');
            } else {
                let real = self.resolve(prefix).ok_or(format!(
                    "`{prefix}…` names no value an earlier command printed (an expectation \
                     must show it first)"
                ))?;
                out.push_str(&real);
            }
            rest = &rest[at + '…'.len_utf8()..];
        }
        out.push_str(rest);
        let mut result = String::new();
        let mut rest = out.as_str();
        while let Some(at) = rest.find('<') {
            result.push_str(&rest[..at]);
            let tail = &rest[at..];
            match tail.find("'s token>") {
                Some(end) if !tail[1..end].contains(['<', '>', ' ']) => {
                    let name = &tail[1..end];
                    let token = self
                        .tokens
                        .get(name)
                        .ok_or(format!("no client {name:?} was created before"))?;
                    result.push_str(token);
                    rest = &tail[end + "'s token>".len()..];
                }
                _ => {
                    result.push('<');
                    rest = &tail[1..];
                }
            }
        }
        result.push_str(rest);
        Ok(result)
    }

    /// Notes the tokens of one output line (`"token"` at the top level).
    fn note_tokens(&mut self, command: &str, output: &Value) {
        let Some(token) = output.get("token").and_then(Value::as_str) else {
            return;
        };
        vault_tests::leaks::watch_secret(token);
        self.last_token = Some(token.to_owned());
        let words: Vec<&str> = command.split_whitespace().collect();
        if let Some(name) = words
            .windows(2)
            .find(|w| w[0] == "--name")
            .map(|w| w[1].to_owned())
        {
            self.tokens.insert(name, token.to_owned());
        }
    }
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}

/// Whether `text` matches `pattern`, where `…` matches anything.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    let (first, rest) = parts.split_first().unwrap();
    let Some(mut text) = text.strip_prefix(first) else {
        return false;
    };
    for (i, part) in rest.iter().enumerate() {
        if i + 1 == rest.len() {
            return part.is_empty() || text.ends_with(part);
        }
        match text.find(part) {
            Some(at) => text = &text[at + part.len()..],
            None => return false,
        }
    }
    text.is_empty()
}

/// The README's JSON shorthand as JSON: a bare `…` value or element is the string `"…"`,
/// a trailing `,…` in an object is the key `"…"` (more keys allowed).
fn expected_json(shown: &str) -> Result<Value, String> {
    let mut out = String::new();
    let mut strings = Strings::default();
    let chars: Vec<char> = shown.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if strings.takes(c) || c != '…' {
            out.push(c);
            continue;
        }
        let previous = out.trim_end().chars().last();
        let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
        let in_object = matches!(next, Some('}') | Some(','))
            && matches!(previous, Some(',') | Some('{'))
            && enclosing_is_object(&out);
        if in_object {
            out.push_str("\"…\":\"…\"");
        } else {
            out.push_str("\"…\"");
        }
    }
    serde_json::from_str(&out).map_err(|e| format!("the expected JSON is not JSON ({e}): {out}"))
}

/// Where a left-to-right scan of JSON text stands: inside a string or not.
#[derive(Default)]
struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    /// Takes the next character: whether it belongs to a string (its quotes included).
    fn takes(&mut self, c: char) -> bool {
        if self.inside {
            match (self.escaped, c) {
                (true, _) => self.escaped = false,
                (false, '\\') => self.escaped = true,
                (false, '"') => self.inside = false,
                _ => {}
            }
            return true;
        }
        self.inside = c == '"';
        self.inside
    }
}

/// Whether the innermost open bracket of `prefix` (JSON text outside strings) is `{`.
fn enclosing_is_object(prefix: &str) -> bool {
    let mut stack = Vec::new();
    let mut strings = Strings::default();
    for c in prefix.chars() {
        if strings.takes(c) {
            continue;
        }
        match c {
            '{' | '[' => stack.push(c),
            '}' | ']' => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack.last() == Some(&'{')
}

/// Compares a real JSON value with the README's, binding placeholders (see the module docs).
fn same_shape(
    shown: &Value,
    real: &Value,
    at: &str,
    bindings: &mut Bindings,
) -> Result<(), String> {
    match (shown, real) {
        (Value::String(s), _) if s == "…" => Ok(()),
        (Value::String(s), Value::String(r)) => {
            if let Some(prefix) = s.strip_suffix('…')
                && !prefix.is_empty()
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                bindings.values.push((prefix.to_owned(), r.clone()));
                return Ok(());
            }
            if s.contains('…') {
                let pattern = bindings.substitute(s)?;
                return if glob(&pattern, r) {
                    Ok(())
                } else {
                    Err(format!("{at}: {r:?} does not match {s:?}"))
                };
            }
            if is_uuid(s) {
                match bindings.values.iter().rev().find(|(shown, _)| shown == s) {
                    Some((_, bound)) if bound != r => Err(format!(
                        "{at}: {r:?}, but the example id {s} was {bound:?} before"
                    )),
                    Some(_) => Ok(()),
                    None => {
                        bindings.values.push((s.clone(), r.clone()));
                        Ok(())
                    }
                }
            } else if s == r {
                Ok(())
            } else {
                Err(format!("{at}: {r:?}, the README shows {s:?}"))
            }
        }
        (Value::Number(_), Value::Number(_)) => Ok(()),
        (Value::Bool(a), Value::Bool(b)) if a == b => Ok(()),
        (Value::Null, Value::Null) => Ok(()),
        (Value::Object(s), Value::Object(r)) => {
            let open = s.contains_key("…");
            for (key, value) in s {
                if key == "…" {
                    continue;
                }
                let Some(real) = r.get(key) else {
                    return Err(format!("{at}: no key {key:?} in {real}"));
                };
                same_shape(value, real, &format!("{at}.{key}"), bindings)?;
            }
            if !open && let Some(extra) = r.keys().find(|k| !s.contains_key(*k)) {
                return Err(format!(
                    "{at}: key {extra:?} is not shown (end the object with ,… to allow more)"
                ));
            }
            Ok(())
        }
        (Value::Array(s), Value::Array(r)) => {
            let open = s.last().is_some_and(|v| v == "…");
            let listed = if open { &s[..s.len() - 1] } else { &s[..] };
            if r.len() < listed.len() || (!open && r.len() != listed.len()) {
                return Err(format!(
                    "{at}: {} elements, the README shows {}",
                    r.len(),
                    s.len()
                ));
            }
            for (i, (shown, real)) in listed.iter().zip(r).enumerate() {
                same_shape(shown, real, &format!("{at}[{i}]"), bindings)?;
            }
            Ok(())
        }
        _ => Err(format!("{at}: {real}, the README shows {shown}")),
    }
}

/// The state the tour's commands share: the daemon, the working directory, the variables
/// the tour exported, and what earlier commands printed.
struct Tour<'a> {
    daemon: &'a Daemon,
    cwd: &'a Path,
    env: BTreeMap<String, String>,
    bindings: Bindings,
}

impl Tour<'_> {
    /// Runs one step; the error names its README line.
    fn run(&mut self, step: &Step) -> Result<(), String> {
        let fail = |why: String| format!("README.md:{}: `{}`: {why}", step.line, step.command);
        if step.command.starts_with("alias vaultctl=") {
            return Ok(());
        }
        let command = self.bindings.substitute(&step.command).map_err(fail)?;
        if let Some(assignment) = command.strip_prefix("export ") {
            let assignment = assignment.split(" #").next().unwrap_or_default().trim();
            let (name, value) = assignment
                .split_once('=')
                .ok_or_else(|| fail("export NAME=VALUE expected".into()))?;
            self.env
                .insert(name.to_owned(), value.trim_matches('"').to_owned());
            return Ok(());
        }
        let script =
            format!("set -eo pipefail\nvaultctl() {{ \"$TOUR_VAULTCTL\" \"$@\"; }}\n{command}\n");
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(&script)
            .current_dir(self.cwd)
            .env("TOUR_VAULTCTL", &*VAULTCTL)
            .env("VAULT_ADDR", format!("http://{}", self.daemon.addr));
        for var in [
            "VAULT_TOKEN",
            "VAULT_PURPOSE",
            "VAULT_DATA_DIR",
            "VAULT_CA_CERT",
            "VAULT_CERT",
            "VAULT_KEY",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(&self.env);
        let out = cmd
            .output()
            .map_err(|e| fail(format!("cannot run bash: {e}")))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let expects_failure = step
            .expected
            .first()
            .is_some_and(|(_, e)| e.starts_with("vaultctl: "));
        if expects_failure {
            let (line, shown) = &step.expected[0];
            if out.status.success() {
                return Err(fail(format!(
                    "succeeded, but README.md:{line} shows it failing ({shown}); stdout: {stdout}"
                )));
            }
            let pattern = self
                .bindings
                .substitute(shown)
                .map_err(|e| format!("README.md:{line}: {e}"))?;
            let first = stderr.lines().next().unwrap_or_default();
            if !glob(&pattern, first) {
                return Err(fail(format!(
                    "stderr {first:?} does not match README.md:{line}: {shown:?}"
                )));
            }
            return Ok(());
        }
        if !out.status.success() {
            return Err(fail(format!("failed ({}): {stderr}", out.status)));
        }
        let real: Vec<&str> = stdout.lines().collect();
        for line in &real {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                self.bindings.note_tokens(&command, &v);
            }
        }
        let mut open = false;
        for (i, (line, shown)) in step.expected.iter().enumerate() {
            let at = |why: String| {
                fail(format!(
                    "README.md:{line}: {why}\nthe whole output:\n{stdout}"
                ))
            };
            if shown == "…" && i + 1 == step.expected.len() {
                open = true;
                break;
            }
            let Some(actual) = real.get(i) else {
                return Err(at(format!("no output line {} (stdout: {stdout:?})", i + 1)));
            };
            if shown.starts_with('{') || shown.starts_with('[') {
                let expected = expected_json(shown).map_err(&at)?;
                let value: Value = serde_json::from_str(actual)
                    .map_err(|e| at(format!("output {actual:?} is not JSON: {e}")))?;
                same_shape(&expected, &value, "$", &mut self.bindings).map_err(&at)?;
            } else {
                let pattern = self.bindings.substitute(shown).map_err(&at)?;
                if !glob(&pattern, actual) {
                    return Err(at(format!("output {actual:?} does not match {shown:?}")));
                }
            }
        }
        if !open && !step.expected.is_empty() && real.len() > step.expected.len() {
            return Err(fail(format!(
                "{} output lines, the README shows {} (end with `# …` to allow more): {stdout}",
                real.len(),
                step.expected.len()
            )));
        }
        Ok(())
    }
}

/// Runs the tour of `readme` on a new daemon; the first failure, with its README line.
fn run_tour(readme: &str) -> Result<usize, String> {
    let steps = steps(readme)?;
    let cwd = tempfile::tempdir().unwrap();
    copy_examples(cwd.path());
    let mut daemon = Daemon::start(&cwd.path().join("vault-data"));
    let mut tour = Tour {
        daemon: &daemon,
        cwd: cwd.path(),
        env: BTreeMap::new(),
        bindings: Bindings::default(),
    };
    let result = steps.iter().try_for_each(|step| tour.run(step));
    assert!(daemon.terminate().success());
    daemon.check_logs();
    result.map(|()| steps.len())
}

/// docs/examples/* into `cwd`/docs/examples/, where the tour names them.
fn copy_examples(cwd: &Path) {
    let to = cwd.join("docs/examples");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(EXAMPLES).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn the_readme_tour_runs_as_written() {
    let readme = std::fs::read_to_string(README).unwrap();
    match run_tour(&readme) {
        Ok(commands) => assert!(commands > 40, "only {commands} commands found"),
        Err(e) => panic!("{e}"),
    }
}

/// The test can fail: the tour with one flag misspelt fails at that command's line.
#[test]
fn a_changed_tour_command_fails_with_its_readme_line() {
    let readme = std::fs::read_to_string(README).unwrap();
    let original = "vaultctl client create --name alice --role admin";
    let line = readme
        .lines()
        .position(|l| l.starts_with(original))
        .expect("the tour creates alice")
        + 1;
    let changed = readme.replacen(
        original,
        "vaultctl client create --name alice --rôle admin",
        1,
    );
    let e = run_tour(&changed).unwrap_err();
    assert!(e.starts_with(&format!("README.md:{line}: ")), "{e}");
    assert!(e.contains("--rôle"), "{e}");
}

#[test]
fn the_readme_json_shorthand_and_placeholders() {
    let shown =
        expected_json(r#"{"proposal":{"id":"9b1d…","n":1,…},"token":"vault_…","l":[…]}"#).unwrap();
    let real = serde_json::json!({
        "proposal": {"id": "abcd-1", "n": 7, "more": true},
        "token": "vault_x", "l": [1, 2],
    });
    let mut b = Bindings::default();
    same_shape(&shown, &real, "$", &mut b).unwrap();
    assert_eq!(
        b.substitute("approve 9b1d… now").unwrap(),
        "approve abcd-1 now"
    );
    // A key not shown, with no `,…`, is a difference.
    let closed = expected_json(r#"{"proposal":{"id":"9b1d…"},"token":"…","l":…}"#).unwrap();
    let e = same_shape(&closed, &real, "$", &mut b).unwrap_err();
    assert!(e.contains("key \"more\" is not shown"), "{e}");
    // An example id binds once and must then be the same.
    let id = "1115219a-78db-40e3-b5c5-aacca0d9c568";
    let first = serde_json::json!({ "id": id });
    same_shape(&first, &serde_json::json!({"id": "real-1"}), "$", &mut b).unwrap();
    same_shape(&first, &serde_json::json!({"id": "real-1"}), "$", &mut b).unwrap();
    assert!(same_shape(&first, &serde_json::json!({"id": "real-2"}), "$", &mut b).is_err());
    assert_eq!(b.substitute("get 1115219a-…").unwrap(), "get real-1");
    assert!(b.substitute("get 77ee…").is_err());
    // Text: `…` matches anything.
    assert!(glob(
        "vaultctl: NotFound: … id real-1",
        "vaultctl: NotFound: no such id real-1"
    ));
    assert!(!glob(
        "vaultctl: NotFound: … id real-1",
        "vaultctl: NotFound: id real-2"
    ));
    assert!(glob("rows: …", "rows: 4"));
    b.tokens.insert("alice".into(), "vault_a".into());
    assert_eq!(
        b.substitute("VAULT_TOKEN=<alice's token> vaultctl")
            .unwrap(),
        "VAULT_TOKEN=vault_a vaultctl"
    );
}
