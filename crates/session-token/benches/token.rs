//! Micro-benchmarks: parse, format and merge of typical header values.
//! Run: cargo bench -p tokenbroker-session-token

#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use session_token::SessionToken;

const ONE: &str = "0:1#100#1=20#2=5";
const TYPICAL: &str = "0:1#100#1=20#2=5,1:1#230#1=19#2=7";
const WIDE: &str = "0:3#9007199254740993#0=1#1=2#2=3,1:3#200#0=5#1=6#2=7,2:3#300#0=8#1=9#2=10,3:3#400#0=11#1=12#2=13";

fn benches(c: &mut Criterion) {
    for (name, text) in [("1x2", ONE), ("2x2", TYPICAL), ("4x3", WIDE)] {
        c.bench_function(&format!("parse {name}"), |b| {
            b.iter(|| SessionToken::parse(black_box(text)))
        });
        let token = SessionToken::parse(text).expect("valid");
        c.bench_function(&format!("format {name}"), |b| {
            b.iter(|| black_box(&token).to_string())
        });
        let newer = SessionToken::parse(&text.replace("#1=", "#1=9")).expect("valid");
        c.bench_function(&format!("merge {name}"), |b| {
            b.iter(|| black_box(&token).merge(black_box(&newer)))
        });
    }
}

criterion_group!(token, benches);
criterion_main!(token);
