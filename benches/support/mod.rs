//! What the benchmarks share: medians, and how far to trust their
//! differences. The static floor programs are `common::static_program`.

pub fn median(v: &mut [f64]) -> f64 {
    pct(v, 0.5)
}

pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A 95% bootstrap interval for median(a) - median(b), resampling whole
/// rounds (a and b were measured in the same rounds). It says how far the
/// difference of medians can be trusted: `runc run` and `docker run` vary
/// by milliseconds to tens of them, what is measured costs less.
pub fn interval(a: &[f64], b: &[f64]) -> (f64, f64) {
    let n = a.len().min(b.len());
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64*: plenty for resampling indices.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    };
    let mut diffs = Vec::with_capacity(2000);
    let (mut x, mut y) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..2000 {
        for k in 0..n {
            let r = next();
            x[k] = a[r];
            y[k] = b[r];
        }
        diffs.push(pct(&mut x, 0.5) - pct(&mut y, 0.5));
    }
    (pct(&mut diffs, 0.025), pct(&mut diffs, 0.975))
}
