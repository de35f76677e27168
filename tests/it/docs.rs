//! The README and the book (docs/src/) checked without the book tool: every internal link
//! and anchor resolves, every page is in SUMMARY.md, every `capwatch` command line in a
//! shell block uses only flags the binary has, and every key of the config types appears in
//! the shipped config file (which the configuration page includes).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::common::repo_path;

/// The README and every page of the book.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![repo_path("README.md")];
    let mut pending = vec![repo_path("docs/src")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|x| x == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Lines outside fenced code blocks, with their numbers, inline code blanked.
fn prose(text: &str) -> Vec<(usize, String)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            let mut blanked = String::new();
            let mut in_code = false;
            for c in line.chars() {
                if c == '`' {
                    in_code = !in_code;
                }
                blanked.push(if in_code { ' ' } else { c });
            }
            out.push((number + 1, blanked));
        }
    }
    out
}

/// The anchor GitHub and mdBook give a heading: lower case, letters, digits, `-` and `_`
/// kept, spaces made `-`, the rest dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            c if c.is_whitespace() => Some('-'),
            _ => None,
        })
        .collect()
}

/// Every anchor of a Markdown file (a repeated heading gets `-1`, `-2`, …).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose(text) {
        let Some(heading) = line.strip_prefix('#') else { continue };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        // Inline code was blanked in `prose`: take the heading from the raw text instead.
        let base = slug(heading);
        let count = seen.entry(base.clone()).or_default();
        out.insert(if *count == 0 { base.clone() } else { format!("{base}-{count}") });
        *count += 1;
    }
    out
}

/// `[text](target)` and `![alt](target)` targets of one line.
fn link_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].trim();
        if !target.is_empty() && !target.contains(' ') {
            out.push(target.to_owned());
        }
        rest = &after[end..];
    }
    out
}

#[test]
fn every_internal_link_and_anchor_in_the_readme_and_the_book_resolves() {
    let files = documents();
    assert!(files.len() > 10, "the book has its pages: {files:?}");
    // Headings with inline code: anchors come from the raw heading text.
    let anchors_of = |path: &Path| -> BTreeSet<String> {
        let text = std::fs::read_to_string(path).unwrap();
        let raw: String = text.replace('`', "");
        anchors(&raw)
    };
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in prose(&text) {
            for target in link_targets(&line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = target.split_once('#').map_or((target.as_str(), None), |(p, a)| (p, Some(a)));
                let resolved = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
                let at = format!("{}:{number}: {target}", file.strip_prefix(repo_path("")).unwrap().display());
                if !resolved.exists() {
                    broken.push(format!("{at} (no such file)"));
                    continue;
                }
                if let Some(anchor) = anchor
                    && resolved.extension().is_some_and(|x| x == "md")
                    && !anchors_of(&resolved).contains(anchor)
                {
                    broken.push(format!("{at} (no such heading)"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));

    // Every page is in the book's table of contents (mdBook leaves others out).
    let summary = std::fs::read_to_string(repo_path("docs/src/SUMMARY.md")).unwrap();
    for file in files.iter().filter(|f| f.starts_with(repo_path("docs/src"))) {
        let name = file.strip_prefix(repo_path("docs/src")).unwrap().display().to_string();
        assert!(name == "SUMMARY.md" || summary.contains(&format!("]({name})")), "{name} is not in SUMMARY.md");
    }
}

#[test]
fn a_broken_link_or_anchor_is_found() {
    let text = "# Title\n\n## The `plan` command\n\nSee [x](#the-plan-command) and `[y](#nowhere)`.\n";
    assert!(anchors(&text.replace('`', "")).contains("the-plan-command"));
    let lines = prose(text);
    let targets: Vec<String> = lines.iter().flat_map(|(_, line)| link_targets(line)).collect();
    assert_eq!(targets, ["#the-plan-command"], "links inside inline code are not links");
    assert_eq!(
        slug("The monitor's own cost (`make bench-fleet`, 2026-12-06)"),
        "the-monitors-own-cost-make-bench-fleet-2026-12-06"
    );
}

/// The arguments of each `capwatch …` command in the shell blocks of the README and the book
/// (`cargo run --release -- …` counts as one), with where it is.
fn documented_commands() -> Vec<(String, Vec<String>)> {
    let mut commands = Vec::new();
    for file in documents() {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut shell = false;
        let mut fenced = false;
        let mut joined = String::new();
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if let Some(language) = trimmed.strip_prefix("```") {
                fenced = !fenced;
                shell = fenced && matches!(language.trim(), "sh" | "bash" | "console" | "shell");
                continue;
            }
            if !shell {
                continue;
            }
            joined.push_str(line.trim_end().trim_end_matches('\\'));
            joined.push(' ');
            if line.trim_end().ends_with('\\') {
                continue;
            }
            let command_line = std::mem::take(&mut joined);
            let command_line = command_line.split(" #").next().unwrap_or_default().trim().trim_start_matches("$ ");
            for part in command_line.split(['|', ';']).flat_map(|p| p.split("&&")) {
                let tokens: Vec<&str> = part.split_whitespace().collect();
                let start =
                    tokens.iter().position(|t| *t == "capwatch" || t.ends_with("/capwatch")).map(|i| i + 1).or_else(
                        || {
                            (tokens.first() == Some(&"cargo")
                                && tokens.get(1) == Some(&"run")
                                && !tokens.contains(&"--example"))
                            .then(|| tokens.iter().position(|t| *t == "--").map(|i| i + 1))
                            .flatten()
                        },
                    );
                let Some(start) = start else { continue };
                let args =
                    tokens[start..].iter().map(|t| t.trim_matches(|c| c == '[' || c == ']').to_owned()).collect();
                let at = format!("{}:{}", file.strip_prefix(repo_path("")).unwrap().display(), number + 1);
                commands.push((at, args));
            }
        }
    }
    commands
}

/// `capwatch WORDS --help`, or None when those words are not a subcommand.
fn help(words: &[String]) -> Option<String> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_capwatch")).args(words).arg("--help").output().unwrap();
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn every_documented_command_line_uses_flags_capwatch_has() {
    let commands = documented_commands();
    assert!(commands.len() > 20, "found too few command lines: {commands:?}");
    let mut helps: BTreeMap<Vec<String>, Option<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (at, args) in &commands {
        // The subcommand: the leading words that `--help` accepts (`export kubernetes`).
        let words: Vec<String> = args.iter().take_while(|a| !a.starts_with('-')).cloned().collect();
        let mut depth = words.len();
        let text = loop {
            let key = words[..depth].to_vec();
            let text = helps.entry(key.clone()).or_insert_with(|| help(&key)).clone();
            match text {
                Some(text) => break text,
                None if depth > 0 => depth -= 1,
                None => panic!("capwatch --help failed"),
            }
        };
        for arg in args.iter().filter(|a| a.starts_with('-') && a.len() > 1 && *a != "--") {
            let flag = arg.split('=').next().unwrap_or(arg);
            let known = text.match_indices(flag).any(|(i, _)| {
                let next = text[i + flag.len()..].chars().next();
                let before = text[..i].chars().last();
                next.is_none_or(|c| !(c.is_alphanumeric() || c == '-'))
                    && before.is_none_or(|c| c == ' ' || c == '[' || c == ',')
            });
            if !known {
                wrong.push(format!("{at}: `capwatch {}` has no {flag}", words[..depth].join(" ")));
            }
        }
    }
    assert!(wrong.is_empty(), "documented flags that do not exist:\n{}", wrong.join("\n"));
    // And the check bites: a flag that does not exist is caught.
    let text = help(&["monitor".to_owned()]).unwrap();
    assert!(text.contains("--discover") && !text.contains("--discovery "));
}

#[test]
fn every_key_of_the_config_types_is_in_the_shipped_config() {
    let shipped = std::fs::read_to_string(repo_path("config/monitoring_config.yaml")).unwrap();
    let defaults: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&capwatch::config::Config::default().to_text().unwrap()).unwrap();
    let mut missing = Vec::new();
    let mut pending = vec![(String::new(), defaults)];
    while let Some((path, value)) = pending.pop() {
        let serde_yaml_ng::Value::Mapping(map) = value else { continue };
        for (key, value) in map {
            let key = key.as_str().unwrap().to_owned();
            let full = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            // Set (`key:`), or shown commented out (`# key:`), or inline (`{key: …`, `, key: …`).
            let present = shipped.lines().any(|line| {
                let line = line.trim_start().trim_start_matches('#').trim_start().trim_start_matches("- ");
                line.starts_with(&format!("{key}:"))
                    || line.contains(&format!("{{{key}:"))
                    || line.contains(&format!(", {key}:"))
            });
            if !present {
                missing.push(full.clone());
            }
            pending.push((full, value));
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "keys the config types have and config/monitoring_config.yaml does not show:\n{}",
        missing.join("\n")
    );
    let page = std::fs::read_to_string(repo_path("docs/src/configuration.md")).unwrap();
    assert!(page.contains("{{#include ../../config/monitoring_config.yaml}}"), "the reference page includes the file");
}
