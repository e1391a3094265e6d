//! "Did you mean": the closest known name to a misspelt one.

/// The candidate closest to `typo`, when one is close enough to be a plausible typo: equal
/// after ignoring case, `-` and `_` (`workingDir` → `working_dir`), or, compared that way,
/// within an edit distance of a third of the longer word (at least 1, at most 3).
pub(crate) fn did_you_mean<'a>(
    typo: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let normal = normalize(typo);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let candidate_normal = normalize(candidate);
        if candidate_normal == normal {
            return Some(candidate);
        }
        let distance = edit_distance(&normal, &candidate_normal);
        let (a, b) = (normal.chars().count(), candidate_normal.chars().count());
        let limit = (a.max(b) / 3).clamp(1, 3);
        // "db" is one edit from "b", but that is no typo: the distance must stay below the
        // length of both words.
        let shortest = a.min(b);
        if distance <= limit && distance < shortest && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Edit distance where swapping two neighbours counts as one edit (optimal string alignment),
/// so `SIGTREM` is closer to `SIGTERM` than to `SIGTRAP`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * width + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (d[(i - 1) * width + j] + 1)
                    .min(d[i * width + j - 1] + 1)
                    .min(d[(i - 1) * width + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[(i - 2) * width + j - 2] + 1);
                }
                best
            };
        }
    }
    d[a.len() * width + b.len()]
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
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }
}
