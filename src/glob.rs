//! Shell-style glob matching for selectors (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`).
//!
//! `*` also crosses `/` and `:`, so `docker.io/library/*` matches
//! `docker.io/library/nginx:1.27`: image references and cgroup paths are
//! matched as plain strings, as Docker's own `--filter` does.

/// Whether `text` matches `pattern` as a whole.
pub fn matches(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?', '[', '\\']) {
        return pattern == text;
    }
    // ASCII (almost every name, label and image) needs no decoding; `?`
    // must match one character, so anything else is matched as chars.
    if pattern.is_ascii() && text.is_ascii() {
        return seq(pattern.as_bytes(), text.as_bytes());
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    seq(&p, &t)
}

/// A unit of text: a byte of ASCII or a char.
trait Unit: Copy + Ord {
    fn is(self, c: char) -> bool;
}

impl Unit for u8 {
    fn is(self, c: char) -> bool {
        self as char == c
    }
}

impl Unit for char {
    fn is(self, c: char) -> bool {
        self == c
    }
}

fn seq<T: Unit>(p: &[T], t: &[T]) -> bool {
    // Iterative matcher with single-star backtracking: linear in practice and
    // never exponential, since only the last `*` is retried.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            let c = p[pi];
            if c.is('*') {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            let step = if c.is('?') {
                Some(pi + 1)
            } else if c.is('[') {
                match class(p, pi, t[ti]) {
                    Some((true, next)) => Some(next),
                    Some((false, _)) => None,
                    None => t[ti].is('[').then_some(pi + 1),
                }
            } else if c.is('\\') && pi + 1 < p.len() {
                (p[pi + 1] == t[ti]).then_some(pi + 2)
            } else {
                (c == t[ti]).then_some(pi + 1)
            };
            if let Some(next) = step {
                pi = next;
                ti += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| c.is('*'))
}

/// Matches `c` against the bracket class opening at `p[start]`; returns
/// whether it matched and the index after the class, or `None` when the
/// bracket is not closed (then it is a literal `[`).
fn class<T: Unit>(p: &[T], start: usize, c: T) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = p.get(i).is_some_and(|x| x.is('!') || x.is('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i].is(']') && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1].is('-') && !p[i + 2].is(']') {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn basics() {
        assert!(matches("*", ""));
        assert!(matches("*", "anything/at:all"));
        assert!(matches("web-*", "web-1"));
        assert!(!matches("web-*", "api-1"));
        assert!(matches(
            "docker.io/library/*",
            "docker.io/library/nginx:1.27"
        ));
        assert!(matches("*nginx*", "docker.io/library/nginx:1.27"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("db-[0-9]", "db-7"));
        assert!(!matches("db-[!0-9]", "db-7"));
        assert!(matches("db-[!0-9]", "db-x"));
        assert!(matches("x[", "x["));
        assert!(matches("a\\*", "a*"));
        assert!(!matches("a\\*", "ab"));
        assert!(matches("exact", "exact"));
        assert!(matches("caf?", "café"));
        assert!(matches("[é]x", "éx"));
        assert!(!matches("caf?", "cafés"));
        assert!(!matches("exact", "exactly"));
        assert!(matches("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!matches("*a*b*c*", "xxaxxcxxbxx"));
    }

    #[test]
    fn no_exponential_blowup() {
        let text = "a".repeat(5000);
        let pat = format!("{}b", "*a".repeat(50));
        assert!(!matches(&pat, &text));
    }
}
