//! "Did you mean": the closest known name to a misspelt one.
//!
//! The search is bounded, whatever the manifest: strings longer than [`MAX_LEN`] characters
//! (on either side) get no suggestion, nor does a search among more than [`MAX_CANDIDATES`]
//! names; each comparison stops early once it cannot be a typo; and callers that search many
//! times per load (unknown dependencies) draw from one [`Budget`] of comparisons.

/// Strings longer than this (in characters) are never compared: no typo is that long.
pub(crate) const MAX_LEN: usize = 64;
/// A search among more candidates than this gives no suggestion.
pub(crate) const MAX_CANDIDATES: usize = 1000;
/// Comparisons one load may spend on suggestions drawn from a [`Budget`]: a hundred misses
/// among a thousand names.
pub(crate) const LOAD_BUDGET: usize = 100_000;
/// The largest edit distance that still counts as a typo.
const MAX_DISTANCE: usize = 3;

/// Comparisons left for suggestions in this load; when they run out, no more suggestions.
#[derive(Debug)]
pub(crate) struct Budget {
    comparisons: usize,
}

impl Budget {
    pub(crate) fn per_load() -> Self {
        Budget {
            comparisons: LOAD_BUDGET,
        }
    }
}

/// The candidate closest to `typo`, when one is close enough to be a plausible typo: equal
/// after ignoring case, `-` and `_` (`workingDir` → `working_dir`), or, compared that way,
/// within an edit distance of a third of the longer word (at least 1, at most 3).
///
/// For short, fixed candidate lists (keys of the contract, enum values, signal names); a
/// search over names from the manifest goes through [`did_you_mean_within`].
pub(crate) fn did_you_mean<'a>(
    typo: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    did_you_mean_within(typo, candidates, &mut Budget::per_load())
}

/// [`did_you_mean`], spending one comparison of `budget` per candidate looked at.
pub(crate) fn did_you_mean_within<'a>(
    typo: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    budget: &mut Budget,
) -> Option<&'a str> {
    // A cheap byte test first: a 4 MB string is neither normalized nor counted.
    if typo.len() > MAX_LEN * 4 {
        return None;
    }
    let normal = normalize(typo);
    if normal.is_empty() || normal.len() > MAX_LEN {
        return None;
    }
    if budget.comparisons == 0 {
        return None;
    }
    let mut candidates = candidates.into_iter();
    let mut taken: Vec<&str> = candidates.by_ref().take(MAX_CANDIDATES).collect();
    // Looking at the candidates costs too, even when there are too many to search.
    let affordable = taken.len() <= budget.comparisons;
    budget.comparisons = budget.comparisons.saturating_sub(taken.len());
    if candidates.next().is_some() || !affordable {
        return None;
    }
    let mut best: Option<(usize, &str)> = None;
    for candidate in taken.drain(..) {
        if candidate.len() > MAX_LEN * 4 {
            continue;
        }
        let candidate_normal = normalize(candidate);
        if candidate_normal.len() > MAX_LEN {
            continue;
        }
        if candidate_normal == normal {
            return Some(candidate);
        }
        let (a, b) = (normal.len(), candidate_normal.len());
        let limit = (a.max(b) / 3).clamp(1, MAX_DISTANCE);
        // "db" is one edit from "b", but that is no typo: the distance must stay below the
        // length of both words.
        let shortest = a.min(b);
        let Some(distance) = bounded_distance(&normal, &candidate_normal, limit) else {
            continue;
        };
        if distance < shortest && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// Lowercased, without `-` and `_`, as characters (at most `MAX_LEN + 1` of them are kept: a
/// longer string is never compared).
fn normalize(s: &str) -> Vec<char> {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .take(MAX_LEN + 1)
        .collect()
}

/// The edit distance of `a` and `b` when it is at most `limit`, else `None`.
fn bounded_distance(a: &[char], b: &[char], limit: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    let distance = edit_distance(a, b);
    (distance <= limit).then_some(distance)
}

/// Edit distance where swapping two neighbours counts as one edit (optimal string alignment,
/// `strsim::osa_distance`), so `SIGTREM` is closer to `SIGTERM` than to `SIGTRAP`. Both sides
/// are at most `MAX_LEN + 1` characters here, so one comparison is bounded too.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let (a, b): (String, String) = (a.iter().collect(), b.iter().collect());
    strsim::osa_distance(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(typo: &str, expected: Option<&str>) {
        let keys = [
            "command",
            "working_dir",
            "env_file",
            "environment",
            "depends_on",
            "user",
        ];
        assert_eq!(did_you_mean(typo, keys), expected, "{typo}");
    }

    #[test]
    fn suggestions() {
        check("comand", Some("command"));
        check("commands", Some("command"));
        check("workingDir", Some("working_dir"));
        check("depends-on", Some("depends_on"));
        check("envfile", Some("env_file"));
        check("usr", Some("user"));
        check("workdir", Some("working_dir"));
        check("banana", None);
        check("x", None);
        assert_eq!(did_you_mean("db", ["b", "web"]), None);
        assert_eq!(
            did_you_mean("SIGTREM", ["SIGTRAP", "SIGTERM"]),
            Some("SIGTERM")
        );
    }

    #[test]
    fn distances() {
        let d = |a: &str, b: &str| {
            let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            edit_distance(&a, &b)
        };
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("abc", ""), 3);
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("same", "same"), 0);
        assert_eq!(d("ab", "ba"), 1);
        assert_eq!(d("abcd", "badc"), 2);
        assert_eq!(d("ca", "abc"), 3);
    }

    #[test]
    fn long_strings_get_no_suggestion() {
        let long = "a".repeat(MAX_LEN + 1);
        let near = format!("{long}b");
        assert_eq!(did_you_mean(&near, [long.as_str()]), None);
        assert_eq!(did_you_mean("web", [long.as_str(), "wbe"]), Some("wbe"));
        let at_limit = "a".repeat(MAX_LEN);
        let typo = format!("{}b", "a".repeat(MAX_LEN - 1));
        assert_eq!(
            did_you_mean(&typo, [at_limit.as_str()]),
            Some(at_limit.as_str())
        );
        let huge = "x".repeat(4 * 1024 * 1024);
        assert_eq!(did_you_mean(&huge, ["x"]), None);
    }

    #[test]
    fn huge_candidate_sets_get_no_suggestion() {
        let names: Vec<String> = (0..=MAX_CANDIDATES).map(|i| format!("svc-{i}")).collect();
        let all = names.iter().map(String::as_str);
        assert_eq!(did_you_mean("svc-1x", all), None);
        let some = names[..MAX_CANDIDATES].iter().map(String::as_str);
        assert_eq!(did_you_mean("svc-1x", some), Some("svc-1"));
    }

    #[test]
    fn a_budget_runs_out() {
        let mut budget = Budget { comparisons: 5 };
        let names = ["web", "db", "cache"];
        assert_eq!(did_you_mean_within("wbe", names, &mut budget), Some("web"));
        assert_eq!(budget.comparisons, 2);
        assert_eq!(did_you_mean_within("wbe", names, &mut budget), None);
        assert_eq!(budget.comparisons, 0);
        let many: Vec<String> = (0..=MAX_CANDIDATES).map(|i| format!("s{i}")).collect();
        let mut budget = Budget::per_load();
        let searches = LOAD_BUDGET / MAX_CANDIDATES;
        for _ in 0..searches {
            let names = many.iter().map(String::as_str);
            assert_eq!(did_you_mean_within("s1x", names, &mut budget), None);
        }
        assert_eq!(
            budget.comparisons, 0,
            "too many candidates still cost their look"
        );
    }
}
