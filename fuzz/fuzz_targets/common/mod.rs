//! What several fuzz targets read from their input the same way.

use cglimit::decision::Limits;
use cglimit::size::Limit;

/// Decided limits from the first three bytes: memory and swap in MiB (0: none),
/// `high` in MiB when the low bit of the third is set.
pub fn limits(head: &[u8]) -> Limits {
    let size = |b: u8| match b {
        0 => Limit::Unlimited,
        n => Limit::Bytes(u64::from(n) << 20),
    };
    Limits {
        memory: size(head[0]),
        swap: size(head[1]),
        high: (head[2] & 1 == 1).then(|| size(head[2] >> 1)),
    }
}
