//! What the load looks like: the operation mix, key choice (uniform or Zipf), token shapes.
//!
//! Why a hand-written PRNG: the generator must cost far less than the thing it measures, and a
//! xorshift per task is a few instructions with no shared state.

use std::sync::Arc;

/// xorshift64*: fast, per task, good enough to spread keys.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Put,
    Merge,
}

/// How keys are drawn.
#[derive(Debug, Clone)]
pub enum Keys {
    Uniform(u64),
    /// Zipf over `n` keys: the cumulative distribution, for a binary search.
    Zipf(Arc<Vec<f64>>),
}

impl Keys {
    pub fn zipf(n: u64, s: f64) -> Self {
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Self::Zipf(Arc::new(cdf))
    }

    pub fn pick(&self, rng: &mut Rng) -> u64 {
        match self {
            Self::Uniform(n) => rng.below(*n),
            Self::Zipf(cdf) => {
                let u = rng.unit();
                cdf.partition_point(|c| *c < u) as u64
            }
        }
    }
}

/// The workload of one run.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Weights of Get, Put, Merge.
    pub mix: [u32; 3],
    pub keys: Keys,
    /// Segments (partition key ranges) per token: 1..=4.
    pub segments: u32,
    /// Regions per segment: 1..=3.
    pub regions: u32,
    pub scope: String,
}

impl Workload {
    pub fn op(&self, rng: &mut Rng) -> Op {
        let total: u32 = self.mix.iter().sum();
        let r = rng.below(u64::from(total.max(1))) as u32;
        if r < self.mix[0] {
            Op::Get
        } else if r < self.mix[0] + self.mix[1] {
            Op::Put
        } else {
            Op::Merge
        }
    }

    /// A token shaped by the workload, advanced by `lsn` so that merges do real work.
    pub fn token(&self, lsn: u64) -> String {
        let mut out = String::with_capacity(64);
        for s in 0..self.segments {
            if s > 0 {
                out.push(',');
            }
            out.push_str(&format!("{s}:1#{}", lsn + u64::from(s)));
            for r in 0..self.regions {
                out.push_str(&format!("#{r}={}", lsn / 2 + u64::from(r)));
            }
        }
        out
    }
}

/// Parses `get=80,put=15,merge=5`.
pub fn parse_mix(s: &str) -> Result<[u32; 3], String> {
    let mut mix = [0u32; 3];
    for part in s.split(',') {
        let (name, weight) = part
            .split_once('=')
            .ok_or_else(|| format!("mix entry {part:?} is not name=weight"))?;
        let weight: u32 = weight
            .parse()
            .map_err(|_| format!("weight {weight:?} is not a number"))?;
        let slot = match name {
            "get" => 0,
            "put" => 1,
            "merge" => 2,
            other => return Err(format!("unknown operation {other:?} (get, put, merge)")),
        };
        mix[slot] = weight;
    }
    if mix.iter().sum::<u32>() == 0 {
        return Err("the mix needs a positive weight".into());
    }
    Ok(mix)
}
