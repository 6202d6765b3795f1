//! Latency samples the harness takes itself (ACK round trips), kept whole in microseconds and
//! summarised by nearest rank, so percentiles are exact rather than bucketed.

/// Summary of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Nearest-rank percentile of ascending `sorted` (q in 0..=1).
pub fn percentile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Sorts `micros` and summarises it; `None` when empty.
pub fn summarise(micros: &mut [u32]) -> Option<Summary> {
    micros.sort_unstable();
    let ms = |q| percentile(micros, q).map(|v| v as f64 / 1000.0);
    let mean = micros.iter().map(|&v| v as f64).sum::<f64>() / micros.len().max(1) as f64 / 1000.0;
    Some(Summary {
        count: micros.len(),
        p50_ms: ms(0.5)?,
        p90_ms: ms(0.9)?,
        p99_ms: ms(0.99)?,
        p999_ms: ms(0.999)?,
        max_ms: ms(1.0)?,
        mean_ms: mean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 0.991), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn summary_sorts_and_converts_to_ms() {
        let mut v = vec![3000, 1000, 2000, 4000];
        let s = summarise(&mut v).unwrap();
        assert_eq!((s.count, s.p50_ms, s.max_ms, s.mean_ms), (4, 2.0, 4.0, 2.5));
        assert!(summarise(&mut []).is_none());
    }
}
